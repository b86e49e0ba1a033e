from core import *
from collections import defaultdict
import math
N=len(reqs)
tree=defaultdict(list)
for i,r in enumerate(reqs): tree[r[0]].append(i)
def lg(x): return 'n' if x is None else min(int(math.log2(x+1)),11)
rows=[]
for k,v in tree.items():
    for j,i in enumerate(v):
        ng=v[j+1]-i if j+1<len(v) else 10**6
        g1=i-v[j-1] if j>0 else None; g2=v[j-1]-v[j-2] if j>1 else None
        rows.append((i,len(reqs[i]),ng,(min(j+1,10),lg(g1),lg(g2),i*8//N)))
for G in (64,256):
    for fs in ((0,),(0,1),(0,1,2),(0,1,2,3),(0,3),(1,3)):
        tab=defaultdict(lambda:[0,0])
        for i,L,ng,f in rows:
            key=tuple(f[x] for x in fs); t=tab[key]; t[0]+=L; t[1]+=L*(ng<G)
        # sort keys by p, cumulative recall/precision (block-weighted)
        ks=sorted(tab.values(),key=lambda t:-t[1]/t[0])
        pos=sum(t[1] for t in ks); out=[]; cum=[0,0]
        for t in ks:
            cum[0]+=t[0]; cum[1]+=t[1]
            out.append((cum[1]/pos, cum[1]/cum[0]))
        # precision at recall 0.3,0.5,0.7
        s=[]
        for R in (0.2,0.4,0.6,0.8):
            pr=[p for rc,p in out if rc>=R][0]; s.append('R%.1f:P%.2f'%(R,pr))
        print('G',G,'feats',fs,'ncls',len(tab),' '.join(s))
