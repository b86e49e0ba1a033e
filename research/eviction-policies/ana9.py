from core import *
from collections import defaultdict, Counter
class Belady(Policy):
    def key(self,b,ri,i,r): return (-nxt[ri][i],)
    def admit(self,b,ri,i,r,vk,k): return vk is None or k>vk
lastt={}; cnt=Counter(); gap=[]; cn=[]
for ri,r in enumerate(reqs):
    gap.append(ri-lastt[r[0]] if r[0] in lastt else None); cnt[r[0]]+=1; cn.append(cnt[r[0]]); lastt[r[0]]=ri
for cap in (439,2196):
    ph=[]; run(cap,Belady(),ph)
    G=Counter(); T=Counter(); C=Counter(); CT=Counter()
    for ri,r in enumerate(reqs):
        g=gap[ri]; gb='first' if g is None else min(g.bit_length(),12)
        G[gb]+=ph[ri]; T[gb]+=len(r)
        C[min(cn[ri],12)]+=ph[ri]; CT[min(cn[ri],12)]+=len(r)
    print(cap,'hits by log2 gap:',[(k,G[k],T[k]) for k in sorted(T,key=str)])
    print(cap,'hits by count:',[(k,C[k],CT[k]) for k in sorted(CT)])
    # partial hits: fraction of hit requests where h < len-? 
    part=Counter()
    for ri,r in enumerate(reqs):
        if ph[ri]>0: part['full' if ph[ri]>=len(r)-3 else 'partial']+=ph[ri]
    print(part)
