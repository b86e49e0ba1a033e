from best_policy import *
from evl import ev
ev('K=3200',lambda cap:BHazG(K=3200))
ev('K=6400',lambda cap:BHazG(K=6400))
ev('K=16*distinct/cap',lambda cap:BHazG(K=16*distinct/cap))
ev('K=8*distinct/cap',lambda cap:BHazG(K=8*distinct/cap))
ev('K=K=16*distinct/cap sl=2',lambda cap:BHazG(K=16*distinct/cap,sl=2.0))
