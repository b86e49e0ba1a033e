from core2 import *
class Haz2(P2):
    """per-block: count n (sat C), last access l, ewma gap g.
    pri = w(n) / (K + n*age + c*n*g),  w(1)=phi, w(n)=n^al"""
    def __init__(s,K=400.0,phi=0.2,c=0.0,al=1.0,a=0.5,C=15,adm=True,G0=0.0):
        s.h={}; s.K=K; s.phi=phi; s.c=c; s.al=al; s.a=a; s.C=C; s.adm=adm; s.G0=G0
    def begin(s,ri,r,h):
        for b in r:
            st=s.h.get(b)
            if st is None: s.h[b]=[1,ri,s.G0]
            elif st[1]!=ri:
                g=ri-st[1]; st[2]=g if st[0]==1 else s.a*g+(1-s.a)*st[2]
                st[0]=min(st[0]+1,s.C); st[1]=ri
    def pri(s,b,now):
        n,l,g=s.h[b]
        return (s.phi if n==1 else n**s.al)/(s.K+n*(now-l)+s.c*n*g)
    def admit(s,b,ri,i,r,vp): return (not s.adm) or s.pri(b,ri)>vp
if __name__=='__main__':
    for K in (100,200,400):
        for phi in (0.05,0.2,0.5):
            evalp2('haz2 K=%g phi=%g'%(K,phi),lambda:Haz2(K,phi))
    for c in (0.1,0.3,1.0):
        evalp2('haz2 K=200 phi=.2 c=%g'%c,lambda:Haz2(200,0.2,c))
    for al in (0.5,1.5,2.0):
        evalp2('haz2 K=200 phi=.2 al=%g'%al,lambda:Haz2(200,0.2,0,al))
    for C in (3,7):
        evalp2('haz2 K=200 phi=.2 C=%d'%C,lambda:Haz2(200,0.2,C=C))
