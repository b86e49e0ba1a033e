from core2 import *
from collections import defaultdict, Counter
from exp8 import Haz
from hz import lb
tc=Counter(r[0] for r in reqs)
class HazOr(Haz):
    # phi from oracle: tree recurs?
    def pri(s,b,now):
        n,l,root=s.h[b]
        w=(1.0 if tc[root]>1 else 0.0)*s.phi if n==1 else n
        return w/(s.K+n*(now-l))
    def begin(s,ri,r,h):
        for b in r:
            st=s.h.get(b)
            if st is None: s.h[b]=[1,ri,r[0]]
            elif st[1]!=ri: st[0]=min(st[0]+1,s.C); st[1]=ri
class HazLen(Haz):
    """phi(L) learned online: P(a first request of length-bucket L is ever followed by another request to same root)"""
    def __init__(s,K=800,phi=1.0,prior=2.0,**kw):
        super().__init__(K,phi,**kw); s.first={}; s.A=defaultdict(float); s.B=defaultdict(float); s.prior=prior
    def begin(s,ri,r,h):
        k=r[0]
        if k in s.first:
            L=s.first.pop(k)
            if L is not None: s.A[L]+=1
        elif not any(k==x for x in ()) and k not in s.h:
            L=lb(len(r)); s.first[k]=L; s.B[L]+=1
        for b in r:
            st=s.h.get(b)
            if st is None: s.h[b]=[1,ri,lb(len(r))]
            elif st[1]!=ri: st[0]=min(st[0]+1,s.C); st[1]=ri
    def pri(s,b,now):
        n,l,L=s.h[b]
        if n==1: w=s.phi*(s.A[L]+0.2*s.prior)/(s.B[L]+s.prior)
        else: w=n
        return w/(s.K+n*(now-l))
for K in (200,800):
    evalp2('haz-oracle-recur K=%d phi=1'%K,lambda:HazOr(K,1.0))
    evalp2('haz-lenphi K=%d phi=1'%K,lambda:HazLen(K,1.0))
    evalp2('haz-lenphi K=%d phi=2'%K,lambda:HazLen(K,2.0))
