from core import *
import json
ts=[json.loads(l)["timestamp"] for l in open(__import__('trace_path').TRACE)]
seen=set(); W=400
for w in range(0,len(reqs),W):
    new=0; blocks=0; hit=0
    for r in reqs[w:w+W]:
        if r[0] not in seen: new+=1
        h=0
        for b in r:
            if b in seen: h+=1
            else: break
        hit+=h; blocks+=len(r); seen.update(r)
    print(w, 'newroot %.2f'%(new/len(reqs[w:w+W])), 'blocks',blocks,'infhit %.2f'%(hit/blocks), 'ts',ts[w])
