"""Best online policy found: 'BHaz' = learned-class reuse probability x frequency-weighted recency hazard,
with admission control, leaf-only sampled eviction.  Reproduce: python3 best_policy.py
Per-page state: n (reuse count, saturating), last-access time (request counter), class id (1 byte).
History for uncached blocks: bounded ghost table (same 3 fields) of G entries, LRU-replaced.
Global state: two small float tables A[class], B[class] (number of accesses of class c / number later re-accessed)."""
import json, sys
from collections import defaultdict, OrderedDict
from core2 import *
OUT=[json.loads(l)['output_length'] for l in open(__import__('trace_path').TRACE)]
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
if __name__=='__main__':
    evalp2('BEST bhaz(out,tail) K=400 NC=6 unbounded ghost',lambda:BHazG())
    evalp2('BEST bhaz(out,tail) K=400 NC=6 ghost=43924/2',lambda:BHazG(G=distinct//2))

class BHazS(BHazG):
    """Same policy, but the reuse count n of uncached blocks comes from a frequency sketch (emulated exactly
    here by a dict of 4-bit saturating counters, optionally halved every `reset` block accesses as in TinyLFU),
    and the bounded ghost only keeps (last, class) used for learning p(class)."""
    def __init__(s,reset=None,**kw):
        super().__init__(**kw); s.cnt=defaultdict(int); s.reset=reset; s.acc=0
    def begin(s,ri,r,h):
        for b,st in s.tmp.items(): s._toghost(b,st)
        s.tmp={}
        ob=obk(OUT[ri]) if s.useout else 0
        known = s.cnt.get(r[0],0)>0
        for b in r:
            if s.cnt[b] and (b in s.page or b in s.ghost or b in s.tmp): pass
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
