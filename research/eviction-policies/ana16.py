import json
from collections import defaultdict, Counter
rows=[json.loads(l) for l in open(__import__('trace_path').TRACE)]
reqs=[r['hash_ids'] for r in rows]
tree=defaultdict(list)
for i,r in enumerate(reqs): tree[r[0]].append(i)
st=defaultdict(lambda:[0,0])
seen=set()
hv={}
for i,r in enumerate(reqs):
    h=0
    for b in r:
        if b in seen: h+=1
        else: break
    hv[i]=h; seen.update(r)
for k,v in tree.items():
    for j,i in enumerate(v):
        if j==0: continue
        last = j==len(v)-1
        r=reqs[i]; full = hv[i]==len(r)
        prevlen=len(reqs[v[j-1]])
        for key in [('full',full),('newtail',len(r)-hv[i]),('lenchg',(len(r)>prevlen)-(len(r)<prevlen)),('outratio', min(rows[i]['output_length']//max(1,rows[v[0]]['output_length']),3))]:
            s=st[key]; s[0]+=1; s[1]+=last
for k in sorted(st,key=str): print(k, st[k][0], 'P(last)=%.2f'%(st[k][1]/st[k][0]))
