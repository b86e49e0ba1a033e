from core import *
from collections import defaultdict
class Filt(Policy):
    def __init__(s,m): s.c=0; s.refs=defaultdict(int); s.m=m
    def begin(s,ri,r,h):
        for b in r: s.refs[b]+=1
    def key(s,b,ri,i,r): s.c+=1; return (s.refs[b]>=s.m, s.c)
    def admit(s,b,ri,i,r,vk,k): return s.refs[b]>=s.m or vk[0]==0
for m in (2,3,4,6,8,10):
    evalp('filter-lru m=%d'%m,lambda:Filt(m))
