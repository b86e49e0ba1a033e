import json
from core2 import *
from collections import defaultdict
OUT=[json.loads(l)['output_length'] for l in open(__import__('trace_path').TRACE)]
def obk(o): return min(o.bit_length(),11)
class BHaz(P2):
    """Block-level learned reuse probability p(class) x recency/frequency hazard n/(K+n*age).
    class = (min(n,NC), tail, outbucket); tail = block first seen in a request whose first block had been seen before
    (i.e. a divergent suffix of a known prompt)."""
    def __init__(s,K=400.0,NC=6,prior=5.0,adm=True,useout=True,usetail=True,sl=1.0,p0=0.3):
        s.h={}; s.K=K; s.NC=NC; s.prior=prior; s.adm=adm; s.useout=useout; s.usetail=usetail; s.sl=sl; s.p0=p0
        s.A=defaultdict(float); s.B=defaultdict(float)
    def p(s,c): return (s.A[c]+s.prior*s.p0)/(s.B[c]+s.prior)
    def begin(s,ri,r,h):
        ob=obk(OUT[ri]) if s.useout else 0
        known = r[0] in s.h
        for b in r:
            st=s.h.get(b)
            if st is None:
                c=(1, known and s.usetail, ob); s.h[b]=[1,ri,c]; s.B[c]+=1
            elif st[1]!=ri:
                s.A[st[2]]+=1
                st[0]+=1; st[1]=ri; c=(min(st[0],s.NC), False, ob); st[2]=c; s.B[c]+=1
    def pri(s,b,now):
        n,l,c=s.h[b]; return s.p(c)*n/(s.K+n*(now-l))
    def admit(s,b,ri,i,r,vp): return (not s.adm) or s.pri(b,ri)>s.sl*vp
if __name__=='__main__':
    evalp2('bhaz notail noout',lambda:BHaz(usetail=False,useout=False))
    evalp2('bhaz tail noout',lambda:BHaz(useout=False))
    evalp2('bhaz notail out',lambda:BHaz(usetail=False))
    evalp2('bhaz tail out',lambda:BHaz())
    evalp2('bhaz tail out sl=2',lambda:BHaz(sl=2.0))
