#!/usr/bin/env python3
"""Does the adaptive controller cost time? Adaptive vs static through the Python API (issue 11).

One shifting workload, replayed on fresh stores with ``adaptive=True`` and ``adaptive=False``
(everything else default), both in this one process, in ABBA order (A B, then B A, ...):

    write burst -> read-heavy reuse -> mixed -> write burst -> read-heavy reuse

Pages are ``--page-kib`` KiB (256 by default), written and read in chains of ``--chain`` pages
(one ``put_batch`` / ``get_batch`` per chain, the prefix passed as the chain's parent). Each
phase runs ``--phase-ops`` chain operations, split between two client threads so both cores are
busy (with one client, background work would run on an idle core and cost nothing):

* **write burst**: every operation writes a new chain;
* **read-heavy reuse**: 90% read a chain written earlier (Zipf-like: recent chains more often),
  10% write a new one;
* **mixed**: 50/50.

The store is bounded (``--capacity-gib``) so reclamation runs in the later phases, as it does
in a full cache. Every read is checked: a chain read back must have every page with the bytes
it was written with (or be a clean miss, counted, if eviction took it).

For each phase the script reports the wall time of each run and, per phase, the ratio of the
medians adaptive/static, plus the ratio of each ABBA pair. A ratio above 1.00 means the
controller cost time. Usage, in the venv of scripts/setup_sglang_venv.sh:

    python scripts/bench_controller.py                 # 6 runs of each, ~10 minutes
    python scripts/bench_controller.py --runs 2 --phase-ops 200 --capacity-gib 1   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import threading
import time

import sglang_lsm

PHASES = (
    ("write burst", 1.0),
    ("read-heavy reuse", 0.1),
    ("mixed", 0.5),
    ("write burst 2", 1.0),
    ("read-heavy reuse 2", 0.1),
)
CLIENTS = 2


def page_bytes(chain: int, i: int, size: int) -> bytes:
    """Deterministic, distinct per page, cheap to make: a 16-byte tag repeated."""
    tag = chain.to_bytes(8, "little") + i.to_bytes(8, "little")
    return (tag * (size // len(tag) + 1))[:size]


def chain_keys(chain: int, n: int) -> list[str]:
    return [f"c{chain:08d}-p{i:02d}" for i in range(n)]


class Workload:
    """The chains written so far, shared by the client threads of one run."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.page = args.page_kib << 10
        self.lock = threading.Lock()
        self.written: list[int] = []
        self.next_chain = 0
        self.misses = 0
        self.wrong = 0
        self.declined = 0

    def new_chain(self) -> int:
        with self.lock:
            c = self.next_chain
            self.next_chain += 1
            return c

    def old_chain(self, rng: random.Random) -> int | None:
        with self.lock:
            if not self.written:
                return None
            # Recent chains more often: an exponential age with mean of a tenth of the history.
            age = min(int(rng.expovariate(10.0 / len(self.written))), len(self.written) - 1)
            return self.written[-1 - age]

    def write(self, store, chain: int) -> None:
        keys = chain_keys(chain, self.args.chain)
        values = [page_bytes(chain, i, self.page) for i in range(len(keys))]
        ok = store.put_batch(keys, values)
        with self.lock:
            self.declined += ok.count(False)
            if all(ok):
                self.written.append(chain)

    def read(self, store, chain: int, buffers: list[bytearray]) -> None:
        keys = chain_keys(chain, self.args.chain)
        hits = store.get_batch(keys, buffers)
        for i, hit in enumerate(hits):
            if not hit:
                with self.lock:
                    self.misses += 1
            elif bytes(buffers[i]) != page_bytes(chain, i, self.page):
                with self.lock:
                    self.wrong += 1


def run_once(args: argparse.Namespace, adaptive: bool, root: str) -> dict:
    path = os.path.join(root, "adaptive" if adaptive else "static")
    shutil.rmtree(path, ignore_errors=True)
    options = json.loads(args.adaptive_options if adaptive else args.static_options)
    store = sglang_lsm.Store(path, capacity_bytes=int(args.capacity_gib * (1 << 30)), **options)
    work = Workload(args)
    phases = {}
    try:
        for name, write_share in PHASES:
            per_client = args.phase_ops // CLIENTS
            errors: list[BaseException] = []

            def client(seed: int, share: float = write_share) -> None:
                rng = random.Random(seed)
                buffers = [bytearray(work.page) for _ in range(args.chain)]
                try:
                    for _ in range(per_client):
                        old = None if rng.random() < share else work.old_chain(rng)
                        if old is None:
                            work.write(store, work.new_chain())
                        else:
                            work.read(store, old, buffers)
                except BaseException as e:  # re-raised below, in the main thread
                    errors.append(e)

            threads = [
                threading.Thread(target=client, args=(hash((name, c)) & 0xFFFF,))
                for c in range(CLIENTS)
            ]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            phases[name] = time.perf_counter() - t0
            if errors:
                raise errors[0]
        stats = store.stats()
    finally:
        store.close()
        shutil.rmtree(path, ignore_errors=True)
    if work.wrong:
        raise AssertionError(f"{work.wrong} pages read back with wrong bytes")
    return {
        "adaptive": adaptive,
        "phase_s": phases,
        "read_misses": work.misses,
        "declined_pages": work.declined,
        "controller_decisions": stats["controller"]["decisions_total"],
        "controller_reverts": stats["controller"]["reverts_total"],
        "write_amplification": stats["write_amplification"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/work/bench-controller", help="scratch directory")
    ap.add_argument("--runs", type=int, default=6, help="runs of each (ABBA order)")
    ap.add_argument("--phase-ops", type=int, default=1200, help="chain operations per phase")
    ap.add_argument("--chain", type=int, default=8, help="pages per chain")
    ap.add_argument("--page-kib", type=int, default=256)
    ap.add_argument("--capacity-gib", type=float, default=4.0)
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--warmup", type=int, default=1, choices=(0, 1), help="untimed first runs")
    # To find which knob costs what: e.g. a static store with the budget the controller picks.
    ap.add_argument("--adaptive-options", default='{"adaptive": true}', help="store options, A")
    ap.add_argument("--static-options", default='{"adaptive": false}', help="store options, B")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)

    # The first store of the process runs slower whatever its options (page cache, allocator,
    # thread start-up): one untimed run of each first, so neither side pays it.
    for adaptive in (True, False)[: 2 * args.warmup]:
        run_once(args, adaptive, args.dir)
    runs: list[dict] = []
    for r in range(args.runs):
        order = (True, False) if r % 2 == 0 else (False, True)
        for adaptive in order:
            res = run_once(args, adaptive, args.dir)
            runs.append(res)
            shown = " ".join(f"{v:6.2f}" for v in res["phase_s"].values())
            label = "adaptive" if adaptive else "static  "
            print(
                f"run {r} {label}: {shown} s  misses {res['read_misses']}"
                f"  retunes {res['controller_decisions']}",
                flush=True,
            )

    table = []
    for name, _ in PHASES:
        a = [x["phase_s"][name] for x in runs if x["adaptive"]]
        s = [x["phase_s"][name] for x in runs if not x["adaptive"]]
        pairs = sorted(ai / si for ai, si in zip(a, s))
        table.append(
            {
                "phase": name,
                "adaptive_median_s": statistics.median(a),
                "static_median_s": statistics.median(s),
                "ratio_of_medians": statistics.median(a) / statistics.median(s),
                "pair_ratios": pairs,
            }
        )
    total_a = statistics.median(sum(x["phase_s"].values()) for x in runs if x["adaptive"])
    total_s = statistics.median(sum(x["phase_s"].values()) for x in runs if not x["adaptive"])
    print("\nphase                 adaptive s  static s  adaptive/static  (pairs)")
    for row in table:
        pairs = ", ".join(f"{p:.2f}" for p in row["pair_ratios"])
        print(
            f"{row['phase']:<20} {row['adaptive_median_s']:10.2f} {row['static_median_s']:9.2f}"
            f" {row['ratio_of_medians']:16.2f}  ({pairs})"
        )
    print(f"{'whole run':<20} {total_a:10.2f} {total_s:9.2f} {total_a / total_s:16.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "runs": runs, "phases": table}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
