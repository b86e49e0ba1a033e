from core2 import *
import math, sys
NB=26
def ab(age): return min(int(2*math.log2(age+1)),NB-1)
# bucket lower bounds/width
lo=[0]*NB
for a in range(0,5000):
    b=ab(a)
    if lo[b]==0 and b>0: lo[b]=a
wid=[(lo[b+1]-lo[b]) if b+1<NB else 2000 for b in range(NB)]
def gb(g, cuts):
    if g is None: return 0
    for j,c in enumerate(cuts):
        if g<c: return j+1
    return len(cuts)+1
class LHD(P2):
    def __init__(s,cmax=8,cuts=(32,128,512),decay=0.9,period=100,adm=True,usegap=True,amax=NB):
        s.h={}; s.cmax=cmax; s.cuts=cuts if usegap else (); s.decay=decay; s.period=period; s.adm=adm
        s.ncls=(cmax+1)*(len(s.cuts)+2); s.amax=amax
        s.H=[[0.0]*NB for _ in range(s.ncls)]; s.N=[0.0]*s.ncls
        s.HD=[[1.0]*NB for _ in range(s.ncls)]
    def cls(s,cnt,g): return min(cnt,s.cmax)*(len(s.cuts)+2)+gb(g,s.cuts)
    def begin(s,ri,r,h):
        if ri%s.period==0 and ri: s.recompute()
        for b in r:
            st=s.h.get(b)
            if st is None:
                c=s.cls(1,None); s.h[b]=[1,ri,c]; s.N[c]+=1
            elif st[1]!=ri:
                g=ri-st[1]; s.H[st[2]][ab(g)]+=1
                st[0]+=1; st[1]=ri; c=s.cls(st[0],g); st[2]=c; s.N[c]+=1
    def recompute(s):
        for c in range(s.ncls):
            H=s.H[c]; N=s.N[c]
            # survival at start of bucket a
            surv=[0.0]*NB; x=N
            for a in range(NB): surv[a]=x; x-=H[a]
            hd=[0.0]*NB; hs=0.0; ts=0.0
            for a in range(min(NB,s.amax)-1,-1,-1):
                hs+=H[a]; ts+=max(surv[a],0)*wid[a]
                hd[a]=(hs/ts) if ts>0 else 0.0
            s.HD[c]=hd
            for a in range(NB): H[a]*=s.decay
            s.N[c]*=s.decay
    def pri(s,b,now):
        st=s.h[b]; return s.HD[st[2]][ab(now-st[1])]
    def admit(s,b,ri,i,r,vp): return (not s.adm) or s.HD[s.h[b][2]][0]>vp
if __name__=='__main__':
    evalp2('lhd default',lambda:LHD())
    evalp2('lhd noadm',lambda:LHD(adm=False))
    evalp2('lhd nogap',lambda:LHD(usegap=False))
