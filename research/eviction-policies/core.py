"""Two prefix-cache simulators with the engine's conventions: per request, hits = leading cached
blocks; then every block is accessed in order; only leaves (no cached child) are evicted; a block
whose parent is not cached is not inserted; a policy may decline to admit a block (and so the
rest of its chain). `run` keeps an exact priority heap (policies whose key only changes when the
block is touched); `run2` samples victims like a real store (policies whose score decays with age)."""
import heapq, random
from trace_path import ROWS

reqs = [r["hash_ids"] for r in ROWS]
OUT = [r["output_length"] for r in ROWS]
distinct = len({b for r in reqs for b in r})
total = sum(len(r) for r in reqs)
FR = [0.01, 0.05, 0.10, 0.25]  # capacities as shares of the distinct blocks
INF = 10**9
# nxt[ri][i]: index of the next request that uses block reqs[ri][i] (the oracles' knowledge)
nxt = [None] * len(reqs); _last = {}
for ri in range(len(reqs) - 1, -1, -1):
    nxt[ri] = [_last.get(b, INF) for b in reqs[ri]]
    for b in reqs[ri]: _last[b] = ri


class Policy:
    """For `run`: key(b, ri, i, r) = eviction key (lowest evicted first); admit(..., victim key, key)."""
    def begin(self, ri, r, h): pass
    def admit(self, b, ri, i, r, vkey, k): return True
    def evicted(self, b, k=None): pass


def leading_cached(r, nodes):
    """Prefix hits of request r: its leading blocks that are cached."""
    h = 0
    for b in r:
        if b not in nodes: break
        h += 1
    return h


def run(cap, pol):
    nodes = {}; heap = []; hits = 0  # nodes: b -> [parent, cached children, key]
    def peek():
        while heap:
            k, v = heap[0]; n = nodes.get(v)
            if n is None or n[1] != 0 or n[2] != k: heapq.heappop(heap); continue  # stale entry
            return k
        return None
    for ri, r in enumerate(reqs):
        h = leading_cached(r, nodes)
        hits += h
        pol.begin(ri, r, h)
        for i, b in enumerate(r):
            parent = r[i - 1] if i else None
            if parent is not None and parent not in nodes: break
            k = pol.key(b, ri, i, r)
            if b in nodes:
                n = nodes[b]; n[2] = k
                if n[1] == 0: heapq.heappush(heap, (k, b))
            else:
                if len(nodes) >= cap and not pol.admit(b, ri, i, r, peek(), k): break
                nodes[b] = [parent, 0, k]
                if parent is not None: nodes[parent][1] += 1
                heapq.heappush(heap, (k, b))
            while len(nodes) > cap:
                k2, v = heapq.heappop(heap); n = nodes.get(v)
                if n is None or n[1] != 0 or n[2] != k2: continue
                del nodes[v]; pol.evicted(v, k2)
                if n[0] is not None and n[0] in nodes:
                    p = nodes[n[0]]; p[1] -= 1
                    if p[1] == 0: heapq.heappush(heap, (p[2], n[0]))
    return 100 * hits / total


class P2:
    """For `run2`: pri(b, now) = value of keeping b (lowest evicted first); admit(..., victim pri)."""
    def begin(self, ri, r, h): pass
    def pri(self, b, now): raise NotImplementedError
    def admit(self, b, ri, i, r, vpri): return True
    def ev(self, b): pass
    def ins(self, b): pass


def run2(cap, pol, K=32, seed=1):
    """Victim = lowest pri among K leaves sampled with replacement (all leaves if there are <= K)."""
    rng = random.Random(seed)
    nodes = {}; leaves = []; lpos = {}; hits = 0  # nodes: b -> [parent, cached children]
    def addleaf(b): lpos[b] = len(leaves); leaves.append(b)
    def rmleaf(b):
        p = lpos.pop(b); last = leaves.pop()
        if last != b: leaves[p] = last; lpos[last] = p
    for ri, r in enumerate(reqs):
        h = leading_cached(r, nodes)
        hits += h
        pol.begin(ri, r, h)
        for i, b in enumerate(r):
            parent = r[i - 1] if i else None
            if parent is not None and parent not in nodes: break
            if b in nodes: continue
            if len(nodes) >= cap:
                n = len(leaves)
                cand = leaves if n <= K else [leaves[rng.randrange(n)] for _ in range(K)]
                best = bp = None
                for c in cand:
                    if c == parent: continue
                    p = pol.pri(c, ri)
                    if bp is None or p < bp: bp = p; best = c
                if best is None or not pol.admit(b, ri, i, r, bp): break
                nd = nodes.pop(best); rmleaf(best); pol.ev(best)
                if nd[0] is not None and nd[0] in nodes:
                    pn = nodes[nd[0]]; pn[1] -= 1
                    if pn[1] == 0: addleaf(nd[0])
            nodes[b] = [parent, 0]; addleaf(b); pol.ins(b)
            if parent is not None:
                pn = nodes[parent]; pn[1] += 1
                if pn[1] == 1: rmleaf(parent)
    return 100 * hits / total
