from core import *
from collections import Counter
for (a,b) in ((3500,3993),(2000,2500)):
    c=Counter(x for r in reqs[a:b] for x in r)
    vals=sorted(c.values(),reverse=True)
    for cap in (439,2196,4392):
        print(a,b,cap,'static window-oracle hits',sum(v-1 for v in vals[:cap]),'of blocks',sum(len(r) for r in reqs[a:b]))
