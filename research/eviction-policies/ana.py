import json
from collections import defaultdict, Counter
reqs=[json.loads(l)["hash_ids"] for l in open(__import__('trace_path').TRACE)]
par={};bad=0
for r in reqs:
    for i,b in enumerate(r):
        p=r[i-1] if i else None
        if b in par and par[b]!=p: bad+=1
        par[b]=p
print('parent inconsistencies',bad)
seen=set(); inf_hits=0; total=0
lcp=[]; newblk=Counter(); firstseen=Counter()
for r in reqs:
    h=0
    for b in r:
        if b in seen: h+=1
        else: break
    # after first miss, any seen blocks?
    after=sum(1 for b in r[h:] if b in seen)
    lcp.append((h,len(r),after))
    inf_hits+=h; total+=len(r)
    seen.update(r)
print('inf cache prefix hit %.2f'%(100*inf_hits/total))
print('blocks seen after first miss', sum(a for _,_,a in lcp))
c=Counter()
for h,n,a in lcp:
    c['h=0' if h==0 else ('full' if h==n else 'partial')]+=1
print(c)
# distribution of hit lengths
hl=Counter(min(h,100)//10 for h,n,a in lcp if h>0); print(sorted(hl.items()))
# first block popularity
fb=Counter(r[0] for r in reqs); print('distinct first blocks',len(fb), fb.most_common(10))
# length distribution
ln=Counter(min(len(r),200)//20 for r in reqs); print(sorted(ln.items()))
# children fan-out
ch=defaultdict(set)
for r in reqs:
    for i in range(1,len(r)): ch[r[i-1]].add(r[i])
fo=Counter(len(v) for v in ch.values()); print('fanout',sorted(fo.items())[:20])
# depth of shared blocks
refs=Counter(b for r in reqs for b in r)
dep={}
for r in reqs:
    for i,b in enumerate(r): dep[b]=i
rc=Counter(min(v,30) for v in refs.values()); print('refcount',sorted(rc.items()))
byd=defaultdict(list)
for b,d in dep.items(): byd[min(d,60)//5].append(refs[b])
print('depth bucket: n blocks, mean refs', [(k*5,len(v),round(sum(v)/len(v),2)) for k,v in sorted(byd.items())])
