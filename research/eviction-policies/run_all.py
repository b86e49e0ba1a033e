"""Reproduce the main rows of the report (single process)."""
from core import *
from core2 import *
from evl import ev
from collections import defaultdict
from exp8 import Haz
from exp13 import Haz2
from exp14 import HazOut
from exp16 import BHaz
from best_policy import BHazG, BHazS
class LRU(Policy):
    def __init__(s): s.c=0
    def key(s,b,ri,i,r): s.c+=1; return (s.c,)
class Prefix2(Policy):
    def __init__(s): s.c=0; s.refs=defaultdict(int)
    def begin(s,ri,r,h):
        for b in r: s.refs[b]+=1
    def key(s,b,ri,i,r): s.c+=1; return (min(s.refs[b],2),s.c)
class Belady(Policy):
    def key(self,b,ri,i,r): return (-nxt[ri][i],)
    def admit(self,b,ri,i,r,vk,k): return vk is None or k>vk
evalp('leaf-lru',LRU); evalp('prefix2',Prefix2); evalp('belady (leaf-only, with bypass)',Belady)
ev('haz K=200 phi=0.2 (no output_length)',lambda cap:Haz(200,0.2))
ev('haz2 K=200 phi=0.2 c=0.1 (no output_length)',lambda cap:Haz2(200,0.2,0.1))
ev('BEST BHazG K=400 NC=6 unbounded history',lambda cap:BHazG())
ev('BEST BHazS sketch-n + ghost 4*cap',lambda cap:BHazS(G=4*cap))
