from core import *
from collections import defaultdict
class Base(Policy):
    def __init__(s,C=24,mode='strict'): s.c=0; s.refs=defaultdict(int); s.C=C; s.mode=mode
    def begin(s,ri,r,h):
        for b in r: s.refs[b]+=1
    def key(s,b,ri,i,r): s.c+=1; return (min(s.refs[b],s.C),s.c)
    def admit(s,b,ri,i,r,vk,k):
        if vk is None: return True
        return k[0]>vk[0]
for C in (2,3,4,6,8,24):
    evalp('lfu%d+strictadm'%C,lambda:Base(C))
