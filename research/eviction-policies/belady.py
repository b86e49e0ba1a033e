from core import *
class Belady(Policy):
    def key(self,b,ri,i,r): return (-nxt[ri][i],)
    def admit(self,b,ri,i,r,vk,k): return vk is None or k>vk   # admit only if sooner than victim
class BeladyNoBypass(Policy):
    def key(self,b,ri,i,r): return (-nxt[ri][i],)
evalp('belady',Belady); evalp('belady-nobypass',BeladyNoBypass)
