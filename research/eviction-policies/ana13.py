import json
from collections import defaultdict, Counter
rows=[json.loads(l) for l in open(__import__('trace_path').TRACE)]
print(rows[5].keys())
tree=defaultdict(list)
for i,r in enumerate(rows): tree[r['hash_ids'][0]].append(i)
tot={k:len(v) for k,v in tree.items()}
# output_length vs tree total count
ob=defaultdict(list)
for k,v in tree.items():
    o=rows[v[0]]['output_length']; ob[min(o.bit_length(),12)].append(len(v))
for k in sorted(ob): print('outlen bucket',k,len(ob[k]), 'mean total',sum(ob[k])/len(ob[k]), 'P(recur)',sum(x>1 for x in ob[k])/len(ob[k]))
# is last request in tree predicted by output length / input_length remainder?
last=Counter(); alln=Counter()
for k,v in tree.items():
    if len(v)<2: continue
    for j,i in enumerate(v[1:],1):
        o=rows[i]['output_length']; b=min(o.bit_length(),12)
        alln[b]+=1; last[b]+= (j==len(v)-1)
print('P(last | outlen bucket) among repeats', {b:(alln[b],round(last[b]/alln[b],2)) for b in sorted(alln)})
# input_length remainder modulo 512
rem=Counter((r['input_length']-512*(len(r['hash_ids'])-1)) for r in rows[:20]); print(rem)
# timestamp gap distribution
ts=[r['timestamp'] for r in rows]; g=sorted(b-a for a,b in zip(ts,ts[1:])); print('ts gaps q',[g[int(q*len(g))] for q in (0.1,0.5,0.9)])
