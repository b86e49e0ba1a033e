import json
from collections import defaultdict, Counter
reqs=[json.loads(l)["hash_ids"] for l in open(__import__('trace_path').TRACE)]
ts=[json.loads(l)["timestamp"] for l in open(__import__('trace_path').TRACE)]
print('ts range',ts[0],ts[-1])
refs=Counter(b for r in reqs for b in r)
# tree stats
tree=defaultdict(list)
for i,r in enumerate(reqs): tree[r[0]].append(i)
sz=Counter(min(len(v),30) for v in tree.values()); print('requests per root',sorted(sz.items()))
# span of trees in request index
spans=[v[-1]-v[0] for v in tree.values() if len(v)>1]
spans.sort(); print('span quantiles',[spans[int(q*len(spans))] for q in (0.1,0.25,0.5,0.75,0.9)])
# For each block at first insertion, features: tree count so far (#reqs with root so far incl this), offset past divergence, req len
seen=set(); rootcnt=Counter()
stat=defaultdict(lambda:[0,0,0])  # key -> [n blocks, n reused, total future refs]
for r in reqs:
    rootcnt[r[0]]+=1
    h=0
    for b in r:
        if b in seen: h+=1
        else: break
    for i,b in enumerate(r):
        if b in seen: continue
        k=('rc',min(rootcnt[r[0]],6))
        for key in [k,('off',min((i-h)//5,10)),('len',min(len(r)//20,10)),('h0',h==0, min(rootcnt[r[0]],3))]:
            s=stat[key]; s[0]+=1; s[1]+= refs[b]>1; s[2]+=refs[b]-1
    seen.update(r)
for k in sorted(stat): 
    s=stat[k]; print(k, s[0], '%.3f'%(s[1]/s[0]), '%.2f'%(s[2]/s[0]))
