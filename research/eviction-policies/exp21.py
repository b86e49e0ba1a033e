from core import *
from exp16 import BHaz
class GDSFB(Policy):
    """heap-friendly: key = L + w * p(class) * n ; L = key of the last evicted page (GDSF inflation).
    admission: admit iff new key > victim key."""
    def __init__(s,w=1.0,adm=True,**kw):
        s.b=BHaz(**kw); s.L=0.0; s.w=w; s.adm=adm
    def begin(s,ri,r,h): s.b.begin(ri,r,h)
    def key(s,b,ri,i,r):
        n,l,c=s.b.h[b]; return (s.L+s.w*s.b.p(c)*n,)
    def admit(s,b,ri,i,r,vk,k): return (not s.adm) or vk is None or k>vk
    def evicted(s,b,k=None):
        if k is not None: s.L=max(s.L,k[0])
for w in ():
    evalp('gdsf-bhaz w=%g'%w,lambda:GDSFB(w))

class GDSFg(GDSFB):
    def __init__(s,g=1.0,**kw): super().__init__(**kw); s.g=g
    def key(s,b,ri,i,r):
        n,l,c=s.b.h[b]; return (s.L+(s.b.p(c)*n)**s.g,)
for g in (0.5,2.0):
    evalp('gdsf-bhaz gamma=%g'%g,lambda:GDSFg(g))
