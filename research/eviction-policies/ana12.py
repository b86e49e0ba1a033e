from core import *
from collections import defaultdict
tree=defaultdict(list)
for i,r in enumerate(reqs): tree[r[0]].append(i)
N=len(reqs)
st=defaultdict(lambda:[0,0,0,0])
for k,v in tree.items():
    L=len(reqs[v[0]]); 
    for key in (('L',min(L,160)//10),('LP',min(L,160)//40, v[0]*4//N)):
        s=st[key]; s[0]+=1; s[1]+=len(v)>1; s[2]+=len(v)-1; s[3]+=L
for k in sorted(st): s=st[k]; print(k,'trees',s[0],'P(recur)=%.2f'%(s[1]/s[0]),'E[more]=%.2f'%(s[2]/s[0]))
# second request hazard dependence on length too? (count>=2 trees): mean total count by length
