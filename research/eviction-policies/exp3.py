from core import *
import sys
class Gap(Policy):
    """per-block history: count, last access (request idx), ewma gap."""
    def __init__(s,mode='rate',alpha=0.5,first_gap=1e9,adm=True):
        s.h={}; s.mode=mode; s.a=alpha; s.fg=first_gap; s.adm=adm; s.now=0
    def begin(s,ri,r,h):
        s.now=ri
        for b in r:
            st=s.h.get(b)
            if st is None: s.h[b]=[1,ri,None]
            elif st[1]!=ri:
                g=ri-st[1]
                st[2]=g if st[2] is None else s.a*g+(1-s.a)*st[2]
                st[0]+=1; st[1]=ri
    def pg(s,b):
        st=s.h[b]; return s.fg if st[2] is None else st[2]
    def key(s,b,ri,i,r):
        g=s.pg(b)
        if s.mode=='rate': return (-g, ri)
        if s.mode=='next': return (-(ri+g), )
    def admit(s,b,ri,i,r,vk,k):
        return (not s.adm) or vk is None or k>vk
if __name__=='__main__':
    for mode in ('rate','next'):
        for a in (0.3,0.5,1.0):
            evalp('gap-%s a=%.1f'%(mode,a),lambda:Gap(mode,a))
