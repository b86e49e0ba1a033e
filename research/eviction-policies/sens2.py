from best_policy import *
from evl import ev
ev('sketch-n, unbounded ghost',lambda cap:BHazS())
for gm in (1,4):
    ev('sketch-n, ghost=%d*cap'%gm,lambda cap:BHazS(G=gm*cap))
ev('sketch-n, ghost=8192',lambda cap:BHazS(G=8192))
ev('sketch-n halved every 64k acc, ghost=4*cap',lambda cap:BHazS(G=4*cap,reset=65536))
