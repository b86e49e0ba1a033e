import json, heapq, sys
from collections import defaultdict
reqs=[json.loads(l)["hash_ids"] for l in open(__import__('trace_path').TRACE)]
distinct=len({b for r in reqs for b in r}); total=sum(len(r) for r in reqs)
def run(cap, keyf, admit=None):
    # leaf-only eviction; key lower = evicted first
    nodes={}  # b -> [parent, children, key]
    refs=defaultdict(int); last=defaultdict(int)
    heap=[]; clock=0; hits=0
    for ri,r in enumerate(reqs):
        h=0
        for b in r:
            if b in nodes: h+=1
            else: break
        hits+=h
        for b in r: refs[b]+=1
        for i,b in enumerate(r):
            parent=r[i-1] if i else None
            if parent is not None and parent not in nodes: break
            clock+=1; last[b]=clock
            k=keyf(b,refs,clock,i,len(r))
            if b in nodes:
                n=nodes[b]; n[2]=k
                if n[1]==0: heapq.heappush(heap,(k,b))
            else:
                if admit and len(nodes)>=cap and not admit(b,refs,heap,nodes): break
                nodes[b]=[parent,0,k]
                if parent is not None: nodes[parent][1]+=1
                heapq.heappush(heap,(k,b))
            while len(nodes)>cap:
                k2,v=heapq.heappop(heap)
                n=nodes.get(v)
                if n is None or n[1]!=0 or n[2]!=k2: continue
                del nodes[v]
                if n[0] is not None and n[0] in nodes:
                    p=nodes[n[0]]; p[1]-=1
                    if p[1]==0: heapq.heappush(heap,(p[2],n[0]))
    return 100*hits/total
fr=[0.01,0.05,0.10,0.25]
pols={
 'leaf-lru': lambda b,refs,c,i,n:(c,),
 'prefix2': lambda b,refs,c,i,n:(min(refs[b],2),c),
 'lfu': lambda b,refs,c,i,n:(refs[b],c),
 'lfu-log': lambda b,refs,c,i,n:(refs[b].bit_length(),c),
 'lfu-cap4': lambda b,refs,c,i,n:(min(refs[b],4),c),
 'lfu-cap8': lambda b,refs,c,i,n:(min(refs[b],8),c),
}
sel=sys.argv[1:] or list(pols)
for name in sel:
    print(name, ' '.join('%.2f'%run(int(f*distinct),pols[name]) for f in fr), flush=True)
