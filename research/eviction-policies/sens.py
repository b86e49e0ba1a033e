from best_policy import *
def ev(name,mk,Ks=32,seed=1):
    res=[]
    for f in FR:
        cap=int(f*distinct); res.append(run2(cap,mk(cap),Ks,seed))
    print('%-44s'%name,' '.join('%6.2f'%x for x in res),flush=True)
if __name__=="__main__":
  for gm in ():
     ev('ghost=%d*cap'%gm,lambda cap:BHazG(G=gm*cap))
 ev('ghost=8192 fixed',lambda cap:BHazG(G=8192))
 for K in (100,200,800,1600):
     ev('K=%d'%K,lambda cap:BHazG(K=K))
 for NC in (3,15):
     ev('NC=%d'%NC,lambda cap:BHazG(NC=NC))
 for pr in (1,20):
     ev('prior=%g'%pr,lambda cap:BHazG(prior=pr))
 for Ks in (8,16,64):
     ev('sample=%d'%Ks,lambda cap:BHazG(),Ks=Ks)
 for sd in (2,3):
     ev('seed=%d'%sd,lambda cap:BHazG(),seed=sd)
 ev('no output-length (tail only)',lambda cap:BHazG(useout=False))
 ev('no admission',lambda cap:BHazG(adm=False))
 ev('admit slack 2',lambda cap:BHazG(sl=2.0))
