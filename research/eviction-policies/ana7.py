from core import *
from collections import Counter
refs=Counter(b for r in reqs for b in r)
# static: choose blocks by refs desc (prefix-closed automatically since parent refs>=child refs)
vals=sorted(refs.values(),reverse=True)
for f in FR:
    cap=int(f*distinct); s=sum(v-1 for v in vals[:cap])
    print('static-oracle-upper(no first miss charge beyond 1) %.2f'%(100*s/total))
class OracleLFU(Policy):
    def __init__(s): s.c=0
    def key(s,b,ri,i,r): s.c+=1; return (refs[b],s.c)
    def admit(s,b,ri,i,r,vk,k): return vk is None or k[0]>vk[0]
evalp('oracle-total-count-lfu+adm',OracleLFU)
class OracleRem(Policy):
    # remaining future refs
    def __init__(s): s.c=0; s.seen=Counter()
    def begin(s,ri,r,h):
        for b in r: s.seen[b]+=1
    def key(s,b,ri,i,r): s.c+=1; return (refs[b]-s.seen[b],s.c)
    def admit(s,b,ri,i,r,vk,k): return vk is None or k[0]>vk[0]
evalp('oracle-remaining-count+adm',OracleRem)
