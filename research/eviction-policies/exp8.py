from core2 import *
class Haz(P2):
    """per-block: count n (saturating C), last access. pri = w(n)/(K + n*age), w(1)=phi, w(n)=n"""
    def __init__(s,K=800.0,phi=0.2,C=15,adm=True,sl=1.0):
        s.h={}; s.K=K; s.phi=phi; s.C=C; s.adm=adm; s.sl=sl
    def begin(s,ri,r,h):
        for b in r:
            st=s.h.get(b)
            if st is None: s.h[b]=[1,ri]
            elif st[1]!=ri: st[0]=min(st[0]+1,s.C); st[1]=ri
    def pri(s,b,now):
        n,l=s.h[b]; return (s.phi if n==1 else n)/(s.K+n*(now-l))
    def admit(s,b,ri,i,r,vp): return (not s.adm) or s.pri(b,ri)*s.sl>vp
if __name__=='__main__':
    import sys
    for K in (200,800,3000):
        for phi in (0.2,1.0):
            for adm in (True,False):
                evalp2('haz K=%g phi=%g adm=%s'%(K,phi,adm),lambda:Haz(K,phi,adm=adm))
