from core import *
from core2 import run2
from exp16 import BHaz
class Belady(Policy):
    def key(self,b,ri,i,r): return (-nxt[ri][i],)
    def admit(self,b,ri,i,r,vk,k): return vk is None or k>vk
for cap in (439,4392):
    pb=[]; run(cap,Belady(),pb); po=[]; run2(cap,BHaz(),perreq=po)
    W=500
    print(cap,' '.join('%d:%d/%d/%d'%(w,sum(pb[w:w+W]),sum(po[w:w+W]),sum(len(r) for r in reqs[w:w+W])) for w in range(0,len(reqs),W)))
