from best_policy import *
from evl import ev
def gbk(g):
    return 0 if g is None else (1 if g<16 else 2 if g<64 else 3 if g<256 else 4)
class BHazH(BHazG):
    """p(class) = P(re-access within H requests | class) (learned), class may include last-gap bucket."""
    def __init__(s,H=None,usegap=True,**kw):
        super().__init__(**kw); s.H=H; s.usegap=usegap
    def begin(s,ri,r,h):
        for b,st in s.tmp.items(): s._toghost(b,st)
        s.tmp={}
        ob=obk(OUT[ri]) if s.useout else 0
        known = (r[0] in s.page) or (r[0] in s.ghost)
        for b in r:
            st=s.page.get(b)
            if st is None:
                st=s.ghost.pop(b,None)
                if st is not None: s.tmp[b]=st
            if st is None:
                c=(1, bool(known and s.usetail), ob, 0); st=[1,ri,c]; s.tmp[b]=st; s.B[c]+=1
            elif st[1]!=ri:
                g=ri-st[1]
                if s.H is None or g<s.H: s.A[st[2]]+=1
                st[0]=min(st[0]+1,s.nsat); st[1]=ri; c=(min(st[0],s.NC), False, ob, gbk(g) if s.usegap else 0); st[2]=c; s.B[c]+=1
ev('bhaz + gapclass (eventual reuse)',lambda cap:BHazH())
for hm in (0.5,2,8):
    ev('bhaz + gapclass, H=%g*cap/30'%hm,lambda cap:BHazH(H=hm*cap/30))
    ev('bhaz nogap, H=%g*cap/30'%hm,lambda cap:BHazH(H=hm*cap/30,usegap=False))
