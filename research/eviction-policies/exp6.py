from core import *
class OrG(Policy):
    def __init__(s,G): s.c=0; s.G=G
    def key(s,b,ri,i,r): s.c+=1; return (nxt[ri][i]-ri<s.G, s.c)
    def admit(s,b,ri,i,r,vk,k): return nxt[ri][i]-ri<s.G
for G in (32,64,128,256,512):
    evalp('oracle reuse<%d + lru'%G,lambda:OrG(G))
