from core import *
from collections import defaultdict
import math
N=len(reqs)
cnt={}; last={}; first={}
E=defaultdict(float); H=defaultdict(float)
def ab(a): return min(int(math.log2(a+1)),11)
P=10  # exposure update every P requests
for ri,r in enumerate(reqs):
    k=r[0]
    if ri%P==0:
        for t in cnt:
            E[(min(cnt[t],12),ab(ri-last[t]),ri*4//N)]+=P
    if k in cnt:
        H[(min(cnt[k],12),ab(ri-last[k]),ri*4//N)]+=1
        cnt[k]+=1
    else: cnt[k]=1
    last[k]=ri
# hazard by count (marginal over age) per phase
for ph in range(4):
    row=[]
    for n in range(1,13):
        e=sum(v for (a,b,c),v in E.items() if a==n and c==ph); h=sum(v for (a,b,c),v in H.items() if a==n and c==ph)
        row.append('%d:%.1e'%(n,h/e if e else 0))
    print('phase',ph,' '.join(row))
# hazard by age bucket for count groups
for ng in ((1,1),(2,3),(4,6),(7,12)):
    row=[]
    for b in range(12):
        e=sum(v for (a,bb,c),v in E.items() if ng[0]<=a<=ng[1] and bb==b); h=sum(v for (a,bb,c),v in H.items() if ng[0]<=a<=ng[1] and bb==b)
        row.append('%d:%.1e'%(2**b,h/e if e else 0))
    print('cnt',ng,' '.join(row))
