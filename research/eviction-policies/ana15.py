from core import *
from collections import Counter
import json
OUT=[json.loads(l)['output_length'] for l in open(__import__('trace_path').TRACE)]
class Belady(Policy):
    def key(self,b,ri,i,r): return (-nxt[ri][i],)
    def admit(self,b,ri,i,r,vk,k): return vk is None or k>vk
pb=[]; run(439,Belady(),pb)
lastt={}; cnt=Counter(); C=Counter(); G=Counter(); L=Counter(); O=Counter()
for ri,r in enumerate(reqs):
    k=r[0]
    if 500<=ri<2500 and pb[ri]>0:
        C[min(cnt[k]+1,8)]+=pb[ri]; G[min((ri-lastt[k]).bit_length(),10)]+=pb[ri]; L[min(len(r)//20,6)]+=pb[ri]; O[min(OUT[ri].bit_length(),11)]+=pb[ri]
    cnt[k]+=1; lastt[k]=ri
print('count',sorted(C.items())); print('log2gap',sorted(G.items())); print('len/20',sorted(L.items())); print('outbits',sorted(O.items()))
