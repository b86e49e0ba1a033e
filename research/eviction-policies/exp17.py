from exp16 import *
from hz import lb
class BHazL(BHaz):
    def __init__(s,mode='len',**kw):
        super().__init__(**kw); s.mode=mode
    def begin(s,ri,r,h):
        if s.mode=='len': ob=lb(len(r))
        elif s.mode=='both': ob=(lb(len(r)),obk(OUT[ri]))
        else: ob=0
        known = r[0] in s.h
        for b in r:
            st=s.h.get(b)
            if st is None:
                c=(1, known and s.usetail, ob); s.h[b]=[1,ri,c]; s.B[c]+=1
            elif st[1]!=ri:
                s.A[st[2]]+=1
                st[0]+=1; st[1]=ri; c=(min(st[0],s.NC), False, ob); st[2]=c; s.B[c]+=1
evalp2('bhaz tail len',lambda:BHazL('len'))
evalp2('bhaz tail len+out',lambda:BHazL('both'))
for K in (100,200,800,1600):
    evalp2('bhaz tail len K=%d'%K,lambda:BHazL('len',K=K))
