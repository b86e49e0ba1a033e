"""Reproduce every figure that README.md, docs/BENCHMARKS.md and this folder's README quote from
the eviction-policy study, and check each against the quoted value.
Usage: python3 run_all.py [--jobs N]     ($TRACE overrides the bundled trace)"""
import argparse, os, statistics, sys, time
T0 = time.time()  # before the imports below parse the trace
from collections import Counter, defaultdict
from multiprocessing import Pool
from core import FR, distinct, reqs, run, run2
from policies import LRU, Belady, Haz, HazAlive, LFULog, OracleRate, OracleWithin, Prefix2
from best_policy import BHazG, BHazS

# name, simulator, policy for a capacity, figures as quoted (1 / 5 / 10 / 25%)
ROWS = [
    ("leaf-LRU", run, lambda cap: LRU(), (3.81, 15.66, 26.23, 44.41)),
    ("prefix2 (Rust `prefix` simulator)", run, lambda cap: Prefix2(), (4.14, 16.66, 28.09, 47.16)),
    ("hazard K=200 phi=0.2", run2, lambda cap: Haz(200, 0.2), (4.63, 16.97, 28.00, 47.43)),
    ("hazard + gap term c=0.1 (best w/o output_length)", run2, lambda cap: Haz(200, 0.2, 0.1), (4.74, 17.38, 28.32, 47.40)),
    ("BHazG, unbounded history (uses output_length)", run2, lambda cap: BHazG(), (5.07, 17.74, 30.03, 51.86)),
    ("BHazS, sketch + ghost 4 x capacity", run2, lambda cap: BHazS(G=4 * cap), (4.79, 17.61, 29.88, 51.86)),
    ("LFU, log2 count classes, LRU within", run, lambda cap: LFULog(), (4.94, 14.87, 26.44, 45.18)),
    ("Belady, leaf-only, may decline to admit", run, lambda cap: Belady(), (18.54, 39.56, 50.63, 62.60)),
    ("oracle: reused within 64 requests + LRU", run, lambda cap: OracleWithin(64), (12.53, 21.93, 28.62, 37.26)),
    ("oracle: ever reused again + hazard K=800", run2, lambda cap: HazAlive(800), (6.71, 22.04, 36.21, 61.01)),
    ("oracle: remaining uses / remaining time", run2, lambda cap: OracleRate(), (7.66, 24.21, 39.13, 61.45)),
]
# Issue 5's LRU and Belady (the Rust simulators, crates/sglang-lsm-bench/src/policy): inputs, not
# measured here; the goal is half the gap between them at 1-10%.
ISSUE_LRU, ISSUE_BELADY = (3.43, 15.48, 25.98), (17.01, 38.61, 50.09)
bad = []


def job(args):
    row, f = args
    _, sim, mk, _ = ROWS[row]
    cap = int(f * distinct)
    return sim(cap, mk(cap))


def check(label, got, want, fmt="%.2f"):
    ok = fmt % got == fmt % want
    if not ok and label not in bad: bad.append(label)
    return (fmt % got) + ("" if ok else " (quoted %s)" % (fmt % want))


def trace_facts():
    tree = defaultdict(list)  # first block -> request indices; every block has one parent, so these are disjoint trees
    for i, r in enumerate(reqs): tree[r[0]].append(i)
    children, parents = defaultdict(set), defaultdict(set)
    for r in reqs:
        parents[r[0]].add(None)
        for a, b in zip(r, r[1:]): children[a].add(b); parents[b].add(a)
    uses = Counter(b for r in reqs for b in r)
    seen, rank, tails, tail_blocks, tail_reused, new_root = set(), Counter(), Counter(), 0, 0, []
    for r in reqs:
        new_root.append(r[0] not in seen); rank[r[0]] += 1
        h = next((j for j, b in enumerate(r) if b not in seen), len(r))
        if rank[r[0]] > 1:  # a repeat of a known prompt: what it adds after the shared prefix
            tails[len(r) - h] += 1; tail_blocks += len(r) - h
            tail_reused += sum(uses[b] > 1 for b in r[h:])
        seen.update(r)
    cvs = [statistics.pstdev(g) / statistics.mean(g) for v in tree.values() if len(v) >= 5
           for g in [[b - a for a, b in zip(v, v[1:])]]]
    once = sum(len(v) == 1 for v in tree.values())
    repeats = sum(tails.values())
    return [
        ("distinct blocks / requests", "%d / %d" % (distinct, len(reqs)), "43924 / 3993"),
        ("prompt trees / requested once / recur", "%d / %d / %d" % (len(tree), once, len(tree) - once), "2211 / 1803 / 408"),
        ("blocks seen under more than one parent", "%d" % sum(len(p) > 1 for p in parents.values()), "0"),
        ("most requests of one tree", "%d" % max(map(len, tree.values())), "24"),
        ("blocks with exactly one child", "%d" % sum(len(c) == 1 for c in children.values()), "39747"),
        ("repeats adding 1-3 new blocks / all repeats", "%d / %d" % (sum(tails[k] for k in (1, 2, 3)), repeats), "1541 / 1782"),
        ("new tail blocks of repeats ever reused", "%.0f%%" % (100 * tail_reused / tail_blocks), "12%"),
        ("new trees among first / last 400 requests", "%.0f%% / %.0f%%" % (100 * statistics.mean(new_root[:400]),
                                                                            100 * statistics.mean(new_root[-400:])), "96% / 2%"),
        ("median CV of a tree's gaps (>= 5 requests)", "%.2f" % statistics.median(cvs), "0.95"),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    a = ap.parse_args()
    jobs = [(i, f) for i in range(len(ROWS)) for f in FR]
    with Pool(a.jobs) as pool:  # fork: workers share the parsed trace and next-use table
        res = pool.map(job, jobs, chunksize=1)
    got = {j: x for j, x in zip(jobs, res)}
    print("%-50s %8s %8s %8s %8s" % ("prefix hit %, capacity =", *("%d%%" % round(100 * f) for f in FR)))
    for i, (name, _, _, want) in enumerate(ROWS):
        print("%-50s %s" % (name, " ".join("%8s" % check(name, got[i, f], w) for f, w in zip(FR, want))))
    hit = {name: [got[i, f] for f in FR[:3]] for i, (name, *_) in enumerate(ROWS)}
    best, best_noout, p2 = hit[ROWS[4][0]], hit[ROWS[3][0]], hit[ROWS[1][0]]
    target = [(l + b) / 2 for l, b in zip(ISSUE_LRU, ISSUE_BELADY)]
    closed = lambda x: [100 * (v - l) / (b - l) for v, l, b in zip(x, ISSUE_LRU, ISSUE_BELADY)]
    print("\nat 1 / 5 / 10% capacity")
    for label, vals, want, fmt in [
        ("issue's target (half the LRU -> Belady gap)", target, (10.2, 27.0, 38.0), "%.1f"),
        ("share of the gap closed, best online (%)", closed(best), (12, 10, 17), "%.0f"),
        ("same, without output_length (%)", closed(best_noout), (10, 8, 10), "%.0f"),
        ("share of the gap closed, LFU log2 (%)", closed(hit[ROWS[6][0]]), (11, -3, 2), "%.0f"),
        ("best without output_length - prefix2 (points)", [x - y for x, y in zip(best_noout, p2)], (0.6, 0.7, 0.2), "%.1f"),
    ]:
        print("%-50s %s" % (label, " / ".join(check(label, v, w, fmt) for v, w in zip(vals, want))))
    print("\ntrace structure")
    for label, val, want in trace_facts():
        if val != want: bad.append(label)
        print("%-50s %s" % (label, val if val == want else "%s (quoted %s)" % (val, want)))
    print("\n%s; %.0f s with %d jobs" % ("every figure matches" if not bad else "MISMATCH: " + "; ".join(bad),
                                       time.time() - T0, a.jobs))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
