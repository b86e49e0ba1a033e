import random
from core import reqs, distinct, total, FR
class P2:
    def begin(self,ri,r,h): pass
    def touch(self,b,ri,i,r): pass      # called for every access (insert or hit) of cached/inserted block
    def pri(self,b,now): raise NotImplementedError  # higher = keep
    def admit(self,b,ri,i,r,vpri): return True
    def ev(self,b): pass
    def ins(self,b): pass
def run2(cap,pol,K=32,seed=1,perreq=None):
    rng=random.Random(seed)
    nodes={}  # b->[parent,nchildren]
    leaves=[]; lpos={}
    def addleaf(b):
        lpos[b]=len(leaves); leaves.append(b)
    def rmleaf(b):
        p=lpos.pop(b); last=leaves.pop()
        if last!=b: leaves[p]=last; lpos[last]=p
    hits=0
    for ri,r in enumerate(reqs):
        h=0
        for b in r:
            if b in nodes: h+=1
            else: break
        hits+=h
        if perreq is not None: perreq.append(h)
        pol.begin(ri,r,h)
        for i,b in enumerate(r):
            parent=r[i-1] if i else None
            if parent is not None and parent not in nodes: break
            if b not in nodes:
                if len(nodes)>=cap:
                    # choose victim among sampled leaves (excluding parent)
                    n=len(leaves)
                    cand=leaves if n<=K else [leaves[rng.randrange(n)] for _ in range(K)]
                    best=None;bp=None
                    for c in cand:
                        if c==parent: continue
                        p=pol.pri(c,ri)
                        if bp is None or p<bp: bp=p;best=c
                    if best is None: break
                    if not pol.admit(b,ri,i,r,bp): break
                    # evict
                    nd=nodes.pop(best); rmleaf(best); pol.ev(best)
                    if nd[0] is not None and nd[0] in nodes:
                        pn=nodes[nd[0]]; pn[1]-=1
                        if pn[1]==0: addleaf(nd[0])
                nodes[b]=[parent,0]; addleaf(b); pol.ins(b)
                if parent is not None:
                    pn=nodes[parent]; pn[1]+=1
                    if pn[1]==1: rmleaf(parent)
            pol.touch(b,ri,i,r)
    return 100*hits/total
def evalp2(name,mk,fr=FR,K=32):
    res=[run2(int(f*distinct),mk(),K) for f in fr]
    print('%-34s'%name,' '.join('%6.2f'%x for x in res),flush=True); return res
