from core2 import *
import sys
class Param(P2):
    """per-block: count, last access, ewma gap. pri = min(cnt,C)^al / (age + cg*g + d)"""
    def __init__(s,al=1.0,cg=1.0,d=10.0,G0=2000.0,a=0.5,C=16,adm=True,sl=1.0):
        s.h={}; s.al=al; s.cg=cg; s.d=d; s.G0=G0; s.a=a; s.C=C; s.adm=adm; s.sl=sl
    def begin(s,ri,r,h):
        for b in r:
            st=s.h.get(b)
            if st is None: s.h[b]=[1,ri,s.G0]
            elif st[1]!=ri:
                g=ri-st[1]; st[2]=g if st[0]==1 else s.a*g+(1-s.a)*st[2]
                st[0]+=1; st[1]=ri
    def pri(s,b,now):
        c,l,g=s.h[b]; return min(c,s.C)**s.al/(now-l+s.cg*g+s.d)
    def admit(s,b,ri,i,r,vp): return (not s.adm) or s.pri(b,ri)*s.sl>vp
if __name__=='__main__':
    for al in (0.0,1.0,2.0):
        for cg in (0.0,1.0):
            for adm in (True,False):
                evalp2('param al=%g cg=%g adm=%s'%(al,cg,adm),lambda:Param(al,cg,adm=adm))
