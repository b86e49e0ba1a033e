from core import *
from collections import Counter, defaultdict
class Belady(Policy):
    def key(self,b,ri,i,r): return (-nxt[ri][i],)
    def admit(self,b,ri,i,r,vk,k): return vk is None or k>vk
class LRU(Policy):
    def __init__(s): s.c=0
    def key(s,b,ri,i,r): s.c+=1; return (s.c,)
tree=defaultdict(list)
for i,r in enumerate(reqs): tree[r[0]].append(i)
tcount={k:len(v) for k,v in tree.items()}
for cap in (439,4392):
  for nm,P in (('belady',Belady),('lru',LRU)):
    ph=[]; run(cap,P(),ph)
    # hits by tree count class and by request length
    byc=Counter(); byl=Counter(); totc=Counter(); totl=Counter()
    for ri,r in enumerate(reqs):
        c=tcount[r[0]]; cc=min(c,24)//4; byc[cc]+=ph[ri]; totc[cc]+=len(r)
        L=min(len(r),120)//20; byl[L]+=ph[ri]; totl[L]+=len(r)
    print(cap,nm,'by tree count/4:',[(k*4,byc[k],totc[k]) for k in sorted(totc)])
    print(cap,nm,'by len/20:',[(k*20,byl[k],totl[k]) for k in sorted(totl)])
