from core2 import *
from collections import Counter
from core import nxt, INF
from exp8 import Haz
class HazDead(Haz):
    def begin(s,ri,r,h):
        for i,b in enumerate(r):
            st=s.h.get(b)
            if st is None: s.h[b]=[1,ri,nxt[ri][i]<INF]
            elif st[1]!=ri: st[0]=min(st[0]+1,s.C); st[1]=ri; st[2]=nxt[ri][i]<INF
    def pri(s,b,now):
        n,l,alive=s.h[b]
        if not alive: return 0.0
        return (s.phi if n==1 else n)/(s.K+n*(now-l))
for K in (200,800,3000):
    evalp2('haz+oracle-alive K=%d'%K,lambda:HazDead(K,1.0))
