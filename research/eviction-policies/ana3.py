import json
from collections import defaultdict, Counter
reqs=[json.loads(l)["hash_ids"] for l in open(__import__('trace_path').TRACE)]
tree=defaultdict(list)
for i,r in enumerate(reqs): tree[r[0]].append(i)
# hits by rank
seen=set(); rank=Counter(); hitsbyrank=Counter(); lenbyrank=Counter()
for i,r in enumerate(reqs):
    rank[r[0]]+=1; k=min(rank[r[0]],6)
    h=0
    for b in r:
        if b in seen: h+=1
        else: break
    hitsbyrank[k]+=h; lenbyrank[k]+=len(r)
    seen.update(r)
print('hits by rank', sorted(hitsbyrank.items()), 'len by rank',sorted(lenbyrank.items()))
# first request length: one-off trees vs multi trees
L1=[len(reqs[v[0]]) for v in tree.values() if len(v)==1]
Lm=[len(reqs[v[0]]) for v in tree.values() if len(v)>1]
import statistics as st
print('first-req len oneoff median/mean',st.median(L1),st.mean(L1),' multi',st.median(Lm),st.mean(Lm))
# length distribution for each
def hist(L): 
    c=Counter(min(x,200)//20 for x in L); return sorted(c.items())
print(hist(L1)); print(hist(Lm))
# print a few multi trees
n=0
for root,v in tree.items():
    if len(v)>=5 and n<6:
        n+=1
        print('root',root,'count',len(v))
        s=set()
        for i in v:
            r=reqs[i];h=0
            for b in r:
                if b in s:h+=1
                else:break
            print('  req',i,'len',len(r),'hit',h)
            s.update(r)
# gaps between successive requests in a tree
g=[]
for v in tree.values():
    for a,b in zip(v,v[1:]): g.append(b-a)
g.sort(); print('tree inter-request gaps quantiles',[g[int(q*len(g))] for q in (0.1,0.25,0.5,0.75,0.9)])
g1=sorted(v[1]-v[0] for v in tree.values() if len(v)>1); print('first gap', [g1[int(q*len(g1))] for q in (0.1,0.25,0.5,0.75,0.9)])
