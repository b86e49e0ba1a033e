"""Eviction over log segments (issue 11, part 2): why the store's CLOCK loses to LRU, and
what S3-FIFO over segments would do, in a model of the engine's reclaimer.

    python3 research/eviction-policies/segment_sim.py TRACE [TRACE ...] [--fracs 0.01,0.05,0.1,0.25]

TRACE is a Mooncake-format JSONL file (plain or .zst): the bundled trace, or one written by
`sglang-lsm gen`. Plain Python 3, no dependencies; prints, per capacity (a share of the
trace's distinct blocks), the prefix hit rate in % of block references and, for the log
models, the write amplification (pages written for puts and relocations / pages put).

The engine model (`clock`) is what `Eviction`-less main does: pages are put one frame per
request chunk of 128 blocks, a frame never spans segments (segments hold ~capacity/32 pages,
at least 16), reclamation starts above capacity minus max(one segment, 2%), takes the oldest
sealed segment, relocates pages read since they were written (second chance) or with resident
children, and evicts the rest leaf first. Frame headers are modelled as 2.4% of the capacity
(measured: 287.8 MB of log held 4,287 pages of 64 KiB at Mooncake 10%). It reproduces the
measured store within ~0.5 points (docs/BENCHMARKS.md, "Issue 11 part 2").

`s3fifo` is S3-FIFO (Yang et al., SOSP 2023) over segments: new pages go to probation
segments, drained first while they hold more than 10% of the bound; a page read meanwhile is
promoted into a main segment, the others are evicted into a ghost list as long as the store
holds pages; a page put again while in the ghost goes to main; main segments are reclaimed
FIFO, relocating a page while it has banked hits (up to 3, one spent per relocation).
Segments hold one queue each (the active segment is sealed when the queue changes).
"""
import argparse
import json
import os
import subprocess
import sys
from collections import OrderedDict

FRAME_PAGES = 128
OVERHEAD = 0.024


def load(path):
    if path.endswith(".zst"):
        text = subprocess.run(["zstd", "-dc", path], check=True, stdout=subprocess.PIPE).stdout.decode()
    else:
        with open(path) as f:
            text = f.read()
    return [json.loads(l)["hash_ids"] for l in text.splitlines() if l.strip()]


def lru(reqs, cap):
    c = OrderedDict()
    hits = refs = 0
    for r in reqs:
        refs += len(r)
        for b in r:
            if b not in c:
                break
            hits += 1
        for b in r:
            if b in c:
                c.move_to_end(b)
            else:
                c[b] = 1
                if len(c) > cap:
                    c.popitem(last=False)
    return hits / refs


class Page:
    __slots__ = ("seg", "hits", "children", "parent")

    def __init__(self, seg, parent):
        self.seg, self.hits, self.children, self.parent = seg, 0, 0, parent


class Log:
    """A value log of segments; `s3` switches S3-FIFO on."""

    def __init__(self, cap, s3, probation=0.1):
        cap = int(cap * (1 - OVERHEAD))
        self.seg = max(16, cap // 32)
        self.target = cap - max(self.seg, cap // 50)
        self.s3, self.limit = s3, probation * cap
        self.pages, self.segs, self.ghost = {}, OrderedDict(), OrderedDict()
        self.next_id, self.active, self.log, self.probation = 0, None, 0, 0
        self.put = self.moved = 0

    def frame(self, n, queue):
        a = self.segs.get(self.active)
        if a is None or (a[2] > 0 and a[2] + n > self.seg) or (a[0] != queue and a[2] > 0):
            self.active, self.next_id = self.next_id, self.next_id + 1
            self.segs[self.active] = [queue, [], 0]
        self.segs[self.active][0] = queue

    def append(self, pid):
        a = self.segs[self.active]
        a[1].append(pid)
        a[2] += 1
        self.log += 1
        self.probation += a[0] == "P"
        return self.active

    def live(self, k):
        return [p for p in dict.fromkeys(self.segs[k][1]) if p in self.pages and self.pages[p].seg == k]

    def victim(self):
        sealed = [k for k in self.segs if k != self.active]
        for k in sealed:
            if not self.live(k):
                return k
        if not self.s3:
            return sealed[0] if sealed else None
        p = [k for k in sealed if self.segs[k][0] == "P"]
        m = [k for k in sealed if self.segs[k][0] == "M"]
        if p and (self.probation > self.limit or not m):
            return p[0]
        return m[0] if m else (p[0] if p else None)

    def reclaim(self):
        k = self.victim()
        if k is None:
            return False
        queue, _, size = self.segs[k]
        cur, evicted = self.live(k), True
        while evicted:  # leaves first: a cold chain goes one level per pass
            evicted, keep = False, []
            for pid in cur:
                p = self.pages[pid]
                if p.children or p.hits:
                    keep.append(pid)
                    continue
                del self.pages[pid]
                if p.parent in self.pages:
                    self.pages[p.parent].children -= 1
                if self.s3 and queue == "P":
                    self.ghost[pid] = 1
                    while len(self.ghost) > max(1, len(self.pages)):
                        self.ghost.popitem(last=False)
                evicted = True
            cur = keep
        del self.segs[k]
        self.log -= size
        self.probation -= size if queue == "P" else 0
        if cur:
            self.frame(len(cur), "M")
        for pid in cur:
            p = self.pages[pid]
            # A main reinsertion spends one hit; a promotion, and CLOCK, spend all.
            p.hits = max(0, p.hits - 1) if (self.s3 and queue == "M") else 0
            p.seg = self.append(pid)
            self.moved += 1
        return True

    def request(self, r):
        h = 0
        for b in r:
            p = self.pages.get(b)
            if p is None:
                break
            h += 1
            p.hits = min(3 if self.s3 else 1, p.hits + 1)
        parent, new = (r[h - 1] if h else None), r[h:]
        for i in range(0, len(new), FRAME_PAGES):
            chunk = new[i:i + FRAME_PAGES]
            for _ in range(64):  # bounded, like the engine's inline reclamation
                if self.log + len(chunk) <= self.target or not self.reclaim():
                    break
            returning = sum(1 for b in chunk if self.ghost.pop(b, None)) if self.s3 else 0
            self.frame(len(chunk), "M" if (not self.s3 or 2 * returning >= len(chunk)) else "P")
            for b in chunk:
                self.pages[b] = Page(self.append(b), parent)
                if parent in self.pages:
                    self.pages[parent].children += 1
                parent = b
                self.put += 1
        return h


def run_log(reqs, cap, s3):
    log, hits, refs = Log(cap, s3), 0, 0
    for r in reqs:
        refs += len(r)
        hits += log.request(r)
    return hits / refs, (log.put + log.moved) / max(1, log.put)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--fracs", default="0.01,0.05,0.1,0.25")
    args = ap.parse_args()
    print("| trace | capacity | LRU | clock (engine model) | s3fifo |")
    print("|---|---|---|---|---|")
    for path in args.traces:
        reqs = load(path)
        distinct = len({b for r in reqs for b in r})
        for f in (float(x) for x in args.fracs.split(",")):
            cap = round(distinct * f)
            c_hit, c_wa = run_log(reqs, cap, False)
            s_hit, s_wa = run_log(reqs, cap, True)
            print(f"| {os.path.basename(path)} | {f:.0%} | {100 * lru(reqs, cap):.2f} | "
                  f"{100 * c_hit:.2f} / {c_wa:.2f} | {100 * s_hit:.2f} / {s_wa:.2f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
