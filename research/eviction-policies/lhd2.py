"""LHD-style hit-density eviction+admission with hazard estimated online from the full access
history (ghost), classes=(count, last gap bucket), log-spaced age buckets."""
from core2 import *
import math, sys
NB=26
def ab(age): return min(int(2*math.log2(age+1)),NB-1)
lo=[None]*NB
for a in range(0,100000):
    b=ab(a)
    if lo[b] is None: lo[b]=a
lo=[x if x is not None else 0 for x in lo]
wid=[max(lo[b+1]-lo[b],1) if b+1<NB else 4000 for b in range(NB)]
def gb(g,cuts):
    if g is None: return 0
    for j,c in enumerate(cuts):
        if g<c: return j+1
    return len(cuts)+1
_cache={}
def tables(cmax,cuts,decay,P,prior):
    key=(cmax,cuts,decay,P,prior)
    if key in _cache: return _cache[key]
    ng=len(cuts)+2; ncls=(cmax+1)*ng
    H=[[0.0]*NB for _ in range(ncls)]; E=[[0.0]*NB for _ in range(ncls)]
    last={}; cls={}; cnt={}
    out=[]
    for ri,r in enumerate(reqs):
        if ri%P==0:
            # exposure for the elapsed period (approx at boundary)
            if ri:
                for b,l in last.items(): E[cls[b]][ab(ri-l)]+=P
            # tables
            tot_h=[sum(H[c][a] for c in range(ncls)) for a in range(NB)]
            tot_e=[sum(E[c][a] for c in range(ncls)) for a in range(NB)]
            HD=[]
            for c in range(ncls):
                lam=[]
                for a in range(NB):
                    g=(tot_h[a]/tot_e[a]) if tot_e[a]>0 else 0.0
                    lam.append((H[c][a]+prior*g)/(E[c][a]+prior) if (E[c][a]+prior)>0 else 0.0)
                hd=[0.0]*NB
                for a0 in range(NB):
                    S=1.0; num=0.0; den=0.0
                    for a in range(a0,NB):
                        l=lam[a]; w=wid[a]
                        if l>0:
                            q=1-math.exp(-l*w); num+=S*q; den+=S*q/l; S*=1-q
                        else: den+=S*w
                    den+=S*4000   # remaining (never reused) lifetime
                    hd[a0]=num/den if den>0 else 0.0
                HD.append(hd)
            out.append(HD)
            for c in range(ncls):
                for a in range(NB): H[c][a]*=decay; E[c][a]*=decay
        for b in r:
            if b in last:
                if last[b]==ri: continue
                g=ri-last[b]; H[cls[b]][ab(g)]+=1
                cnt[b]+=1
            else: g=None; cnt[b]=1
            last[b]=ri; cls[b]=min(cnt[b],cmax)*ng+gb(g,cuts)
    _cache[key]=out
    return out
class LHD2(P2):
    def __init__(s,cmax=8,cuts=(32,128,512),decay=0.9,P=50,prior=20.0,adm=True,admslack=1.0):
        s.T=tables(cmax,cuts,decay,P,prior); s.P=P; s.cmax=cmax; s.cuts=cuts; s.ng=len(cuts)+2
        s.h={}; s.adm=adm; s.sl=admslack; s.cur=None
    def begin(s,ri,r,h):
        s.cur=s.T[ri//s.P]
        for b in r:
            st=s.h.get(b)
            if st is None: s.h[b]=[1,ri,s.cmax and (1*s.ng)]
            elif st[1]!=ri:
                g=ri-st[1]; st[0]+=1; st[1]=ri; st[2]=min(st[0],s.cmax)*s.ng+gb(g,s.cuts)
    def pri(s,b,now):
        st=s.h[b]; return s.cur[st[2]][ab(now-st[1])]
    def admit(s,b,ri,i,r,vp): return (not s.adm) or s.cur[s.h[b][2]][0]*s.sl>vp
if __name__=='__main__':
    evalp2('lhd2 default',lambda:LHD2())
    evalp2('lhd2 noadm',lambda:LHD2(adm=False))
