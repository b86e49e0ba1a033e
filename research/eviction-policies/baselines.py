from core import *
from core2 import *
from collections import defaultdict
class LFUDA(Policy):
    """LFU with dynamic aging (GDSF-style): key = L + n (n = count within cache lifetime), L = key of last eviction."""
    def __init__(s,C=1000,w=1.0): s.L=0.0; s.n=defaultdict(int); s.C=C; s.w=w; s.c=0
    def begin(s,ri,r,h):
        for b in r: s.n[b]+=1
    def key(s,b,ri,i,r): s.c+=1; return (s.L+s.w*min(s.n[b],s.C), s.c)
    def evicted(s,b,k=None):
        if k is not None: s.L=max(s.L,k[0])
def run_lfuda(cap,C,w):
    p=LFUDA(C,w)
    orig=p.evicted
    return p
class TinyLFU(P2):
    """LRU eviction (sampled), TinyLFU admission: admit iff f(new) > f(victim); frequencies from a
    history counter halved every W*cap block accesses (emulates count-min sketch with reset)."""
    def __init__(s,Wmul=10,cap=1000,prefer=False):
        s.f=defaultdict(int); s.last={}; s.acc=0; s.W=Wmul*cap; s.prefer=prefer
    def begin(s,ri,r,h):
        for b in r:
            s.f[b]+=1; s.last[b]=ri; s.acc+=1
            if s.acc>=s.W:
                s.acc=0
                for k in list(s.f):
                    s.f[k]//=2
                    if s.f[k]==0: del s.f[k]
        s.vict=None
    def pri(s,b,now): return s.last[b]
    def admit(s,b,ri,i,r,vp):
        # victim frequency: approximate with the frequency of the LRU-ish sampled victim -> need its id
        return True
class TinyLFU2(P2):
    """sampled victim = min last-access; admission compares sketch frequency of new vs victim."""
    def __init__(s,Wmul=10,cap=1000):
        s.f=defaultdict(int); s.last={}; s.acc=0; s.W=Wmul*cap
    def begin(s,ri,r,h):
        for b in r:
            s.f[b]+=1; s.last[b]=ri; s.acc+=1
            if s.acc>=s.W:
                s.acc=0
                for k in list(s.f):
                    s.f[k]//=2
                    if s.f[k]==0: del s.f[k]
    def pri(s,b,now): return (s.last[b], s.f.get(b,0))
    def admit(s,b,ri,i,r,vp): return s.f.get(b,0)>vp[1]
if __name__=='__main__':
    for C,w in ((1000,1.0),(4,1.0),(1000,0.3)):
        res=[run(int(f*distinct),LFUDA(C,w)) for f in FR]
        print('%-34s'%('lfu-da C=%d w=%g'%(C,w)),' '.join('%6.2f'%x for x in res),flush=True)
    for Wm in (3,10,30):
        res=[run2(int(f*distinct),TinyLFU2(Wm,int(f*distinct))) for f in FR]
        print('%-34s'%('tinylfu-adm+lru W=%dxcap'%Wm),' '.join('%6.2f'%x for x in res),flush=True)
