from hz import *
for m in (300,3000,30000):
    evalp2('hz len m=%g'%m,lambda:HZ(m=m))
    evalp2('hz nolen m=%g'%m,lambda:HZ(m=m,uselen=False))
