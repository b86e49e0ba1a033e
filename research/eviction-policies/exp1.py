from core import *
from collections import defaultdict
class Base(Policy):
    def __init__(s,C=2,adm=False): s.c=0; s.refs=defaultdict(int); s.C=C; s.adm=adm
    def begin(s,ri,r,h):
        for b in r: s.refs[b]+=1
    def key(s,b,ri,i,r): s.c+=1; return (min(s.refs[b],s.C),s.c)
    def admit(s,b,ri,i,r,vk,k): return (not s.adm) or vk is None or k[0]>=vk[0]
class LRU(Base):
    def key(s,b,ri,i,r): s.c+=1; return (s.c,)
evalp('leaf-lru',LRU)
evalp('prefix2',lambda:Base(2))
for C in (2,3,4,8,24):
    evalp('lfu%d+adm(>=)'%C,lambda:Base(C,True))
