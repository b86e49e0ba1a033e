from core2 import *
from collections import Counter
tot=Counter(b for r in reqs for b in r)
N=len(reqs)
class OrRate(P2):
    def __init__(s,K=None,be=50.0): s.seen=Counter(); s.last={}; s.K=K; s.be=be
    def begin(s,ri,r,h):
        for b in r: s.seen[b]+=1; s.last[b]=ri
    def pri(s,b,now):
        rem=tot[b]-s.seen[b]; p=rem/(N-now+s.be)
        if s.K: n=s.seen[b]; p*=s.K/(s.K+n*(now-s.last[b]))
        return p
    def admit(s,b,ri,i,r,vp): return s.pri(b,ri)>vp
evalp2('oracle rem-rate',lambda:OrRate())
evalp2('oracle rem-rate x recency K=400',lambda:OrRate(400))
