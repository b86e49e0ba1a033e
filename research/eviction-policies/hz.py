"""Online-learned hazard policy (per-request class hazard by count, request-length bucket, age).
Hazard table learned from a bounded ghost table keyed by the request's first block."""
from core2 import *
import math
def lb(L):  # request length bucket (log2)
    return min(L.bit_length()-1, 7)          # 1,2-3,4-7,...,128+
NA=8
AMIN=5
def ab(a): return min(max(a.bit_length()-AMIN,0), NA-1)   # <32 ->0, 32-63->1, ... ,2048+ ->7
_cache={}
def tables(C,P,decay,m,uselen):
    key=(C,P,decay,m,uselen)
    if key in _cache: return _cache[key]
    NL=8 if uselen else 1
    H=[[[0.0]*NA for _ in range(NL)] for _ in range(C+1)]
    E=[[[0.0]*NA for _ in range(NL)] for _ in range(C+1)]
    ghost={}  # root -> [count, last, lenbucket]
    out=[]
    for ri,r in enumerate(reqs):
        if ri%P==0:
            if ri:
                for n,l,L in ghost.values(): E[n][L][ab(ri-l)]+=P
            T=[[[0.0]*NA for _ in range(NL)] for _ in range(C+1)]
            for n in range(1,C+1):
                for a in range(NA):
                    hg=sum(H[x][L][a] for x in range(1,C+1) for L in range(NL)); eg=sum(E[x][L][a] for x in range(1,C+1) for L in range(NL))
                    lg=hg/eg if eg>0 else 0.0
                    hp=sum(H[n][L][a] for L in range(NL)); ep=sum(E[n][L][a] for L in range(NL))
                    lp=(hp+m*lg)/(ep+m)
                    for L in range(NL):
                        T[n][L][a]=(H[n][L][a]+m*lp)/(E[n][L][a]+m)
            out.append(T)
            if decay<1:
                for n in range(C+1):
                    for L in range(NL):
                        h=H[n][L]; e=E[n][L]
                        for a in range(NA): h[a]*=decay; e[a]*=decay
        k=r[0]; Lb=lb(len(r)) if uselen else 0
        g=ghost.get(k)
        if g is None: ghost[k]=[1,ri,Lb]
        else:
            H[g[0]][g[2]][ab(ri-g[1])]+=1
            g[0]=min(g[0]+1,C); g[1]=ri; g[2]=Lb
    _cache[key]=out; return out
class HZ(P2):
    def __init__(s,C=8,P=10,decay=0.995,m=20.0,uselen=True,adm=True,sl=1.0):
        s.T=tables(C,P,decay,m,uselen); s.P=P; s.C=C; s.uselen=uselen; s.adm=adm; s.sl=sl; s.h={}
    def begin(s,ri,r,h):
        s.cur=s.T[ri//s.P]; Lb=lb(len(r)) if s.uselen else 0
        for b in r:
            st=s.h.get(b)
            if st is None: s.h[b]=[1,ri,Lb]
            elif st[1]!=ri: st[0]=min(st[0]+1,s.C); st[1]=ri; st[2]=Lb
    def pri(s,b,now):
        n,l,L=s.h[b]; return s.cur[n][L][ab(now-l)]
    def admit(s,b,ri,i,r,vp): return (not s.adm) or s.pri(b,ri)*s.sl>vp
if __name__=='__main__':
    evalp2('hz len',lambda:HZ())
    evalp2('hz nolen',lambda:HZ(uselen=False))
    evalp2('hz len noadm',lambda:HZ(adm=False))
