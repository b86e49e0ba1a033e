from core import *
from collections import defaultdict, Counter
tree=defaultdict(list)
for i,r in enumerate(reqs): tree[r[0]].append(i)
N=len(reqs)
stat=defaultdict(lambda:[0,0,0])
for k,v in tree.items():
    for j,i in enumerate(v):
        ng = v[j+1]-i if j+1<len(v) else N+5000  # treat as never
        pg = i-v[j-1] if j>0 else None
        pgb = 'first' if pg is None else ('<20' if pg<20 else '<100' if pg<100 else '<400' if pg<400 else '>=400')
        for key in [('prevgap',pgb),('cnt',min(j+1,10)),('phase',i*4//N, 'first' if j==0 else 'rep'), ('len', min(len(reqs[i]),120)//30)]:
            s=stat[key]; s[0]+=1; s[1]+=ng<20; s[2]+=ng<100
for k in sorted(stat,key=str):
    s=stat[k]; print(k,s[0],'P(next<20)=%.3f P(next<100)=%.3f'%(s[1]/s[0],s[2]/s[0]))
