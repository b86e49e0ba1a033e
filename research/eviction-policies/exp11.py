from core2 import *
class RateFirst(P2):
    """per-block: count n, first-seen time f, last access l. pri=(n-1+al)/(now-f+be) * agefactor"""
    def __init__(s,al=0.2,be=100.0,K=None,adm=True,C=255):
        s.h={}; s.al=al; s.be=be; s.K=K; s.adm=adm; s.C=C
    def begin(s,ri,r,h):
        for b in r:
            st=s.h.get(b)
            if st is None: s.h[b]=[1,ri,ri]
            elif st[2]!=ri: st[0]=min(st[0]+1,s.C); st[2]=ri
    def pri(s,b,now):
        n,f,l=s.h[b]; p=(n-1+s.al)/(now-f+s.be)
        if s.K: p*= s.K/(s.K+n*(now-l))
        return p
    def admit(s,b,ri,i,r,vp): return (not s.adm) or s.pri(b,ri)>vp
for al in (0.1,0.5):
    for be in (50,300):
        for K in (None,1000):
            evalp2('ratefirst al=%g be=%g K=%s'%(al,be,K),lambda:RateFirst(al,be,K))
