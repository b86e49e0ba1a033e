from core import *
from collections import defaultdict
import statistics as st
tree=defaultdict(list)
for i,r in enumerate(reqs): tree[r[0]].append(i)
big=[(k,v) for k,v in tree.items() if len(v)>=8]
print(len(big))
for k,v in big[:15]:
    g=[b-a for a,b in zip(v,v[1:])]
    print(len(v), len(reqs[v[0]]), v[0], v[-1], 'gaps', g)
# CV of gaps per tree, and correlation of gap with rank
cvs=[]
for k,v in tree.items():
    if len(v)>=5:
        g=[b-a for a,b in zip(v,v[1:])]
        cvs.append(st.pstdev(g)/st.mean(g))
print('median CV',st.median(cvs))
# Does the first gap predict later? predictive: given gap history mean, is next gap proportional
import math
xs=[];ys=[]
for k,v in tree.items():
    g=[b-a for a,b in zip(v,v[1:])]
    for j in range(2,len(g)):
        xs.append(math.log(st.mean(g[:j]))); ys.append(math.log(g[j]))
mx,my=st.mean(xs),st.mean(ys)
cov=sum((a-mx)*(b-my) for a,b in zip(xs,ys)); 
print('corr log mean-past-gaps vs next gap', cov/math.sqrt(sum((a-mx)**2 for a in xs)*sum((b-my)**2 for b in ys)))
