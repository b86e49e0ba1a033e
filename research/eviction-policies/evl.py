from core2 import *
def ev(name,mk,Ks=32,seed=1):
    res=[]
    for f in FR:
        cap=int(f*distinct); res.append(run2(cap,mk(cap),Ks,seed))
    print('%-44s'%name,' '.join('%6.2f'%x for x in res),flush=True)
    return res
