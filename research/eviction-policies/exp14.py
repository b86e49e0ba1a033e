import json
from core2 import *
from collections import defaultdict
OUT=[json.loads(l)['output_length'] for l in open(__import__('trace_path').TRACE)]
def obk(o): return min(o.bit_length(),11)
class HazOut(P2):
    """per-block: n, last access, class (min(n,NC), out-len bucket). pri = p(class) * n/(K+n*age)
    p(class) learned online: fraction of requests of that class followed by another request to the same first block."""
    def __init__(s,K=200.0,NC=3,prior=5.0,adm=True,useout=True,pw=1.0):
        s.h={}; s.K=K; s.NC=NC; s.prior=prior; s.adm=adm; s.useout=useout; s.pw=pw
        s.A=defaultdict(float); s.B=defaultdict(float); s.pend={}
    def cls(s,n,ri): return (min(n,s.NC), obk(OUT[ri]) if s.useout else 0)
    def p(s,c):
        return ((s.A[c]+s.prior*0.3)/(s.B[c]+s.prior))**s.pw
    def begin(s,ri,r,h):
        k=r[0]
        if k in s.pend: s.A[s.pend[k]]+=1
        st=s.h.get(k); n=(st[0]+1) if st else 1
        c=s.cls(n,ri); s.pend[k]=c; s.B[c]+=1
        for b in r:
            st=s.h.get(b)
            if st is None: s.h[b]=[1,ri,s.cls(1,ri)]
            elif st[1]!=ri: st[0]+=1; st[1]=ri; st[2]=s.cls(st[0],ri)
    def pri(s,b,now):
        n,l,c=s.h[b]; return s.p(c)*n/(s.K+n*(now-l))
    def admit(s,b,ri,i,r,vp): return (not s.adm) or s.pri(b,ri)>vp
if __name__=='__main__':
    evalp2('hazcls noout K=200',lambda:HazOut(200,useout=False))
    for K in (100,200,400,800):
        evalp2('hazout K=%g'%K,lambda:HazOut(K))
    evalp2('hazout K=200 pw=2',lambda:HazOut(200,pw=2.0))
    evalp2('hazout K=200 NC=6',lambda:HazOut(200,NC=6))
