"""Baselines, the hazard policies that do not use `output_length`, and the oracles."""
from collections import Counter, defaultdict
from core import INF, P2, Policy, nxt, reqs


class LRU(Policy):
    def __init__(s): s.c = 0
    def key(s, b, ri, i, r): s.c += 1; return (s.c,)


class Prefix2(Policy):
    """Blocks referenced twice outlive blocks referenced once, LRU within each class (the Rust `prefix` simulator)."""
    def __init__(s): s.c = 0; s.refs = defaultdict(int)
    def begin(s, ri, r, h):
        for b in r: s.refs[b] += 1
    def key(s, b, ri, i, r): s.c += 1; return (min(s.refs[b], 2), s.c)


class LFULog(Prefix2):
    """Classes by log2 of the reference count, LRU within a class: the best at 1% alone."""
    def key(s, b, ri, i, r): s.c += 1; return (s.refs[b].bit_length(), s.c)


class Belady(Policy):
    """Evict the leaf used furthest in the future; decline a block used later than the victim."""
    def key(s, b, ri, i, r): return (-nxt[ri][i],)
    def admit(s, b, ri, i, r, vk, k): return vk is None or k > vk


class OracleWithin(Policy):
    """Oracle: a block is worth keeping iff it is used again within G requests; LRU among equals."""
    def __init__(s, G): s.c = 0; s.G = G
    def key(s, b, ri, i, r): s.c += 1; return (nxt[ri][i] - ri < s.G, s.c)
    def admit(s, b, ri, i, r, vk, k): return nxt[ri][i] - ri < s.G


class Haz(P2):
    """Hazard score w(n) / (K + n*age + c*n*gap): n = request count (saturating at C), age = requests
    since last use, gap = EWMA of past inter-request gaps (c = 0 disables it); w(1) = phi, w(n) = n.
    Admit a new block only if it scores above the victim."""
    def __init__(s, K=200.0, phi=0.2, c=0.0, a=0.5, C=15):
        s.h = {}; s.K = K; s.phi = phi; s.c = c; s.a = a; s.C = C
    def begin(s, ri, r, h):
        for b in r:
            st = s.h.get(b)
            if st is None: s.h[b] = [1, ri, 0.0]
            elif st[1] != ri:
                g = ri - st[1]; st[2] = g if st[0] == 1 else s.a * g + (1 - s.a) * st[2]
                st[0] = min(st[0] + 1, s.C); st[1] = ri
    def pri(s, b, now):
        n, l, g = s.h[b]
        return (s.phi if n == 1 else n) / (s.K + n * (now - l) + s.c * n * g)
    def admit(s, b, ri, i, r, vp): return s.pri(b, ri) > vp


class HazAlive(Haz):
    """Oracle: Haz with phi = 1, except blocks never used again score 0."""
    def __init__(s, K=800.0): super().__init__(K, 1.0); s.alive = {}
    def begin(s, ri, r, h):
        super().begin(ri, r, h)
        for i, b in enumerate(r): s.alive[b] = nxt[ri][i] < INF
    def pri(s, b, now): return super().pri(b, now) if s.alive[b] else 0.0


_uses = Counter(b for r in reqs for b in r)


class OracleRate(P2):
    """Oracle: exact remaining use count / remaining requests (+ 50), i.e. knows how many but not when."""
    def __init__(s, be=50.0): s.seen = Counter(); s.be = be
    def begin(s, ri, r, h):
        for b in r: s.seen[b] += 1
    def pri(s, b, now): return (_uses[b] - s.seen[b]) / (len(reqs) - now + s.be)
    def admit(s, b, ri, i, r, vp): return s.pri(b, ri) > vp
