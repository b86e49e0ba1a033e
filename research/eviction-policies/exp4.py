from core2 import *
class Hist(P2):
    def __init__(s): s.h={}
    def begin(s,ri,r,h):
        for b in r:
            st=s.h.get(b)
            if st is None: s.h[b]=[1,ri,None,ri]
            elif st[1]!=ri:
                g=ri-st[1]; st[2]=g if st[2] is None else s.a*g+(1-s.a)*st[2]
                st[0]+=1; st[1]=ri
class LRU(Hist):
    a=0.5
    def pri(s,b,now): return s.h[b][1]
class Rate(Hist):
    def __init__(s,a=0.5,fg=1e6,adm=True,mode='max'):
        super().__init__(); s.a=a; s.fg=fg; s.adm=adm; s.mode=mode
    def val(s,b,now):
        st=s.h[b]; g=s.fg if st[2] is None else st[2]
        age=now-st[1]
        if s.mode=='max': return -max(g,age)
        if s.mode=='sum': return -(g+age)
    def pri(s,b,now): return s.val(b,now)
    def admit(s,b,ri,i,r,vp): return (not s.adm) or s.val(b,ri)>vp
evalp2('s-lru',LRU)
for mode in ('max','sum'):
  for a in (0.5,1.0):
    for adm in (True,False):
      evalp2('rate-%s a=%.1f adm=%s'%(mode,a,adm),lambda:Rate(a,1e6,adm,mode))
