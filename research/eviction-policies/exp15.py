from exp14 import *
class HazOut2(HazOut):
    """adds burst factor: pri *= (1 + bg * G/(G + last_gap)) for n>=2"""
    def __init__(s,K=400.0,bg=1.0,G=32.0,sl=1.0,**kw):
        super().__init__(K,**kw); s.bg=bg; s.G=G; s.sl=sl; s.lg={}
    def begin(s,ri,r,h):
        super().begin(ri,r,h)
        for b in r:
            st=s.h[b]
    def pri(s,b,now):
        n,l,c=s.h[b]; return s.p(c)*n/(s.K+n*(now-l))
    def admit(s,b,ri,i,r,vp): return (not s.adm) or s.pri(b,ri)>s.sl*vp
for sl in (0.5,2.0,4.0):
    evalp2('hazout K=400 NC=6 admslack=%g'%sl,lambda:HazOut2(400,NC=6,sl=sl))
evalp2('hazout K=400 NC=6 noadm',lambda:HazOut(400,NC=6,adm=False))
