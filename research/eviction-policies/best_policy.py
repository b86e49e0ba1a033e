"""Best online policies found: learned reuse probability per class x frequency-weighted recency
hazard, p(class) * n / (K + n*age), with admission control (admit only above the victim).
Per-page state: n (request count, saturating), last access (request index), class.
class = (min(n, NC), first sighting in a request whose first block is known, output_length bucket);
p(class) = (re-accesses of class + prior*p0) / (blocks assigned to class + prior), learned online.
Uncached blocks keep their state in a ghost table (unbounded, or G entries LRU-replaced).
`useout=False` drops the output_length bucket, which a store does not see when it admits a page."""
from collections import defaultdict, OrderedDict
from core import OUT, P2


def obk(o): return min(o.bit_length(),11)
class BHazG(P2):
    def __init__(s,K=400.0,NC=6,prior=5.0,p0=0.3,useout=True,usetail=True,adm=True,sl=1.0,G=None,nsat=15):
        s.K=K; s.NC=NC; s.prior=prior; s.p0=p0; s.useout=useout; s.usetail=usetail; s.adm=adm; s.sl=sl; s.G=G; s.nsat=nsat
        s.A=defaultdict(float); s.B=defaultdict(float)
        s.page={}                 # state of cached pages
        s.ghost=OrderedDict()     # bounded history of uncached blocks (G entries; None = unbounded)
        s.tmp={}                  # state of blocks of the current request not (yet) cached
    def p(s,c): return (s.A[c]+s.prior*s.p0)/(s.B[c]+s.prior)
    def get(s,b):
        st=s.page.get(b)
        if st is None: st=s.tmp.get(b)
        return st
    def begin(s,ri,r,h):
        # drop state of blocks from the previous request that were not admitted -> ghost
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
                c=(1, bool(known and s.usetail), ob); st=[1,ri,c]; s.tmp[b]=st; s.B[c]+=1
            elif st[1]!=ri:
                s.A[st[2]]+=1
                st[0]=min(st[0]+1,s.nsat); st[1]=ri; c=(min(st[0],s.NC), False, ob); st[2]=c; s.B[c]+=1
    def _toghost(s,b,st):
        s.ghost[b]=st; s.ghost.move_to_end(b)
        if s.G is not None:
            while len(s.ghost)>s.G: s.ghost.popitem(last=False)
    def ins(s,b): s.page[b]=s.tmp.pop(b)
    def ev(s,b): s._toghost(b,s.page.pop(b))
    def pri(s,b,now):
        n,l,c=s.get(b); return s.p(c)*n/(s.K+n*(now-l))
    def admit(s,b,ri,i,r,vp): return (not s.adm) or s.pri(b,ri)>s.sl*vp
class BHazS(BHazG):
    """Same policy with bounded state: n comes from a frequency sketch (emulated exactly here by a dict
    of 4-bit saturating counters, optionally halved every `reset` block accesses as in TinyLFU), so
    the bounded ghost (G entries) only has to remember last access and class for learning p(class)."""
    def __init__(s,reset=None,**kw):
        super().__init__(**kw); s.cnt=defaultdict(int); s.reset=reset; s.acc=0
    def begin(s,ri,r,h):
        for b,st in s.tmp.items(): s._toghost(b,st)
        s.tmp={}
        ob=obk(OUT[ri]) if s.useout else 0
        known = s.cnt.get(r[0],0)>0
        for b in r:
            st=s.page.get(b)
            if st is None:
                st=s.ghost.pop(b,None)
                if st is not None: s.tmp[b]=st
            prevn=s.cnt[b]
            if st is not None and st[1]==ri: continue
            s.cnt[b]=min(prevn+1,s.nsat); n=s.cnt[b]
            s.acc+=1
            if st is not None: s.A[st[2]]+=1
            c=(min(n,s.NC), bool(n==1 and known and s.usetail), ob); s.B[c]+=1
            if st is None: st=[n,ri,c]; s.tmp[b]=st
            else: st[0]=n; st[1]=ri; st[2]=c
        if s.reset and s.acc>=s.reset:
            s.acc=0
            for k in list(s.cnt):
                s.cnt[k]//=2
                if not s.cnt[k]: del s.cnt[k]
