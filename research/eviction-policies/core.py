import json, heapq
from collections import defaultdict
reqs=[json.loads(l)["hash_ids"] for l in open(__import__('trace_path').TRACE)]
distinct=len({b for r in reqs for b in r}); total=sum(len(r) for r in reqs)
INF=10**9
# next use (request index) for each (request, position)
nxt=[None]*len(reqs); last={}
for ri in range(len(reqs)-1,-1,-1):
    r=reqs[ri]; nxt[ri]=[last.get(b,INF) for b in r]
    for b in r: last[b]=ri
FR=[0.01,0.05,0.10,0.25]
class Policy:
    """hooks: begin(ri,r,h) before insertion; key(b,ri,i,r) eviction key (low evicted first);
    admit(b,ri,i,r,victimkey) -> bool for new block when cache full"""
    def begin(self,ri,r,h): pass
    def admit(self,b,ri,i,r,vkey,k): return True
    def evicted(self,b,k=None): pass
def run(cap, pol, perreq=None):
    nodes={}; heap=[]; hits=0
    def peek():
        while heap:
            k,v=heap[0]; n=nodes.get(v)
            if n is None or n[1]!=0 or n[2]!=k: heapq.heappop(heap); continue
            return k
        return None
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
            k=pol.key(b,ri,i,r)
            if b in nodes:
                n=nodes[b]; n[2]=k
                if n[1]==0: heapq.heappush(heap,(k,b))
            else:
                if len(nodes)>=cap:
                    vk=peek()
                    if not pol.admit(b,ri,i,r,vk,k): break
                nodes[b]=[parent,0,k]
                if parent is not None: nodes[parent][1]+=1
                heapq.heappush(heap,(k,b))
            while len(nodes)>cap:
                k2,v=heapq.heappop(heap)
                n=nodes.get(v)
                if n is None or n[1]!=0 or n[2]!=k2: continue
                del nodes[v]; pol.evicted(v,k2)
                if n[0] is not None and n[0] in nodes:
                    p=nodes[n[0]]; p[1]-=1
                    if p[1]==0: heapq.heappush(heap,(p[2],n[0]))
    return 100*hits/total
def evalp(name, mk, fr=FR):
    res=[run(int(f*distinct), mk()) for f in fr]
    print('%-28s'%name, ' '.join('%6.2f'%x for x in res), flush=True)
    return res
