#!/usr/bin/env python3
"""Benchmark SGLang's HiCacheFile against sglang-lsm's HiCacheLSM, on CPU, in one run.

Both backends get the same page tensors through the same calls, 128 pages per call as
SGLang's cache controller issues them:

* ``generic``: ``batch_set(keys, tensors)`` / ``batch_get(keys, tensors)``, the interface
  HiCacheFile implements (and the one SGLang uses without ``interface_v1``);
* ``v1`` (HiCacheLSM only): ``batch_set_v1`` / ``batch_get_v1`` with a host pool whose
  ``get_page_buffer_meta`` lists each page as a K and a V half, the zero-copy path SGLang
  uses with ``interface_v1``.

Each run writes every page, syncs, drops the page cache (root needed:
``sync; echo 3 > /proc/sys/vm/drop_caches``), reads every page back cold and checks the bytes.
The device limit is measured on the same file system with sequential O_DIRECT writes and
reads of the same number of bytes (several threads, large blocks).

Write GB/s counts the time until the calls return plus a final ``sync`` (bytes on disk);
"calls only" is the time until the calls return.

Usage (the SGLang venv from scripts/setup_sglang_venv.sh, with sglang-lsm installed):

    python scripts/bench_hicache.py                          # 20k x 128 KiB, 300 x 8 MiB
    python scripts/bench_hicache.py --small-pages 2000 --large-pages 30   # quick check
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import mmap
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace

import torch

GB = 1e9
BATCH = 128


def drop_caches() -> bool:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def page_keys(n: int, tag: str) -> list[str]:
    """A chain of SHA-256 hex page keys, shaped like SGLang's."""
    keys, prior = [], hashlib.sha256(tag.encode()).digest()
    for i in range(n):
        prior = hashlib.sha256(prior + i.to_bytes(4, "little")).digest()
        keys.append(prior.hex())
    return keys


class KVHalvesPool:
    """A host pool stand-in over a ``[pages, page_bytes]`` uint8 tensor (one token per page)
    whose pages are described as two parts, K then V, like SGLang's page_first layout."""

    def __init__(self, buffer: torch.Tensor):
        self.buffer = buffer
        self.page_size = 1
        self.layout = "page_first"
        self.dtype = buffer.dtype
        self.page_bytes = buffer.shape[1]

    def get_page_buffer_meta(self, indices):
        base, pb = self.buffer.data_ptr(), self.page_bytes
        half = pb // 2
        ptrs, sizes = [], []
        for i in indices.tolist():
            ptrs += [base + i * pb, base + i * pb + half]
            sizes += [half, pb - half]
        return ptrs, sizes


@dataclass
class Result:
    workload: str
    system: str
    write_calls_s: float
    write_s: float
    read_s: float
    nbytes: int
    cold: bool
    ok: bool

    def gbps(self, seconds: float) -> float:
        return self.nbytes / seconds / GB if seconds > 0 else float("nan")


def storage_config(extra: dict, model_name: str = "bench/model"):
    from sglang.srt.mem_cache.hicache_storage import HiCacheStorageConfig

    return HiCacheStorageConfig(
        tp_rank=0,
        tp_size=1,
        pp_rank=0,
        pp_size=1,
        attn_cp_rank=0,
        attn_cp_size=1,
        is_mla_model=False,
        enable_storage_metrics=False,
        is_page_first_layout=True,
        model_name=model_name,
        extra_config=extra,
    )


def make_backend(system: str, root: str, engine_options: dict):
    from sglang.srt.mem_cache.storage.backend_factory import StorageBackendFactory

    if system == "HiCacheFile":
        cfg = storage_config({"file_storage_path": root})
        return StorageBackendFactory.create_backend("file", cfg, None)
    extra = {
        "backend_name": "lsm",
        "module_path": "sglang_lsm.hicache",
        "class_name": "HiCacheLSM",
        "interface_v1": 1 if system.endswith("v1") else 0,
        "storage_dir": root,
        **engine_options,
    }
    return StorageBackendFactory.create_backend("dynamic", storage_config(extra), None)


def run_backend(system, workload, src, dst, keys, root, engine_options) -> Result:
    os.makedirs(root, exist_ok=True)
    backend = make_backend(system, root, engine_options)
    n = src.shape[0]
    v1 = system.endswith("v1")
    if v1:
        src_pool, dst_pool = KVHalvesPool(src), KVHalvesPool(dst)
        backend.register_mem_pool_host(src_pool)
    ok = True

    start = time.perf_counter()
    for lo in range(0, n, BATCH):
        hi = min(lo + BATCH, n)
        if v1:
            res = backend.batch_set_v1(
                keys[lo:hi], torch.arange(lo, hi), SimpleNamespace(prefix_keys=None)
            )
            ok &= all(res)
        else:
            ok &= bool(backend.batch_set(keys[lo:hi], [src[i] for i in range(lo, hi)]))
    calls_done = time.perf_counter()
    if hasattr(backend, "store"):
        backend.store.flush()
    os.sync()
    write_done = time.perf_counter()

    if v1:
        backend.register_mem_pool_host(dst_pool)
    cold = drop_caches()
    start_read = time.perf_counter()
    for lo in range(0, n, BATCH):
        hi = min(lo + BATCH, n)
        if v1:
            res = backend.batch_get_v1(
                keys[lo:hi], torch.arange(lo, hi), SimpleNamespace(prefix_keys=None)
            )
            ok &= all(res)
        else:
            got = backend.batch_get(keys[lo:hi], [dst[i] for i in range(lo, hi)])
            ok &= all(g is not None for g in got)
    read_done = time.perf_counter()
    ok &= torch.equal(src, dst)
    if hasattr(backend, "close"):
        backend.close()
    dst.zero_()
    shutil.rmtree(root, ignore_errors=True)
    return Result(
        workload,
        system,
        calls_done - start,
        write_done - start,
        read_done - start_read,
        src.numel(),
        cold,
        bool(ok),
    )


# Write with 4 MiB x 16 in flight (fio's reference setting). Read: the best of 4 MiB x 16 and
# 1 MiB x 32; on this virtual disk large direct reads are split badly and 1 MiB requests at a
# deeper queue read ~2x faster (fio: 1.16 vs 2.06 GB/s). Same shapes as `sglang-lsm bench`.
WRITE_SHAPE = (4 << 20, 16)
READ_SHAPES = ((4 << 20, 16), (1 << 20, 32))


def device_limit(root: str, nbytes: int) -> tuple[float, float]:
    """Sequential O_DIRECT write then read of ``nbytes`` in one file (GB/s, GB/s)."""
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, "device-limit.bin")
    total = max(1, nbytes // (4 << 20)) * (4 << 20)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    try:
        os.posix_fallocate(fd, 0, total)

        def timed(write: bool, block: int, threads: int) -> float:
            counter = iter(range(total // block))
            lock = threading.Lock()

            def work() -> None:
                buf = mmap.mmap(-1, block)  # page-aligned, as O_DIRECT needs
                buf.write(os.urandom(4096) * (block // 4096))
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    if write:
                        os.pwritev(fd, [buf], i * block)
                    else:
                        os.preadv(fd, [buf], i * block)

            ts = [threading.Thread(target=work) for _ in range(threads)]
            start = time.perf_counter()
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            if write:
                os.fsync(fd)
            return time.perf_counter() - start

        write_s = timed(True, *WRITE_SHAPE)
        read_s = float("inf")
        for shape in READ_SHAPES:
            drop_caches()
            read_s = min(read_s, timed(False, *shape))
    finally:
        os.close(fd)
        os.unlink(path)
    return total / write_s / GB, total / read_s / GB


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--dir", default="bench-out/hicache", help="scratch directory on the disk under test"
    )
    ap.add_argument("--small-pages", type=int, default=20_000)
    ap.add_argument("--small-kib", type=int, default=128)
    ap.add_argument("--large-pages", type=int, default=300)
    ap.add_argument("--large-mib", type=int, default=8)
    ap.add_argument(
        "--systems",
        default="HiCacheFile,HiCacheLSM,HiCacheLSM v1",
        help="comma-separated subset of: HiCacheFile, HiCacheLSM, HiCacheLSM v1",
    )
    ap.add_argument(
        "--engine-options", default="{}", help="JSON object of extra engine options for HiCacheLSM"
    )
    ap.add_argument("--no-device-limit", action="store_true")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    engine_options = json.loads(args.engine_options)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]

    workloads = []
    if args.small_pages > 0:
        workloads.append(
            (f"{args.small_pages} x {args.small_kib} KiB", args.small_pages, args.small_kib << 10)
        )
    if args.large_pages > 0:
        workloads.append(
            (f"{args.large_pages} x {args.large_mib} MiB", args.large_pages, args.large_mib << 20)
        )

    results: list[Result] = []
    limits: dict[str, tuple[float, float]] = {}
    for name, n, page_bytes in workloads:
        print(f"== {name} ({n * page_bytes / GB:.2f} GB)", flush=True)
        gen = torch.Generator().manual_seed(n)
        src = torch.randint(0, 256, (n, page_bytes), dtype=torch.uint8, generator=gen)
        dst = torch.zeros_like(src)
        keys = page_keys(n, name)
        for system in systems:
            root = os.path.join(args.dir, system.replace(" ", "-"))
            shutil.rmtree(root, ignore_errors=True)
            r = run_backend(system, name, src, dst, keys, root, engine_options)
            results.append(r)
            warm = "" if r.cold else " (WARM: could not drop caches)"
            print(
                f"   {system:14s} write {r.gbps(r.write_s):6.2f} GB/s"
                f" (calls only {r.gbps(r.write_calls_s):6.2f})"
                f"  read {r.gbps(r.read_s):6.2f} GB/s{warm}"
                f"  {'ok' if r.ok else 'DATA MISMATCH'}",
                flush=True,
            )
        if not args.no_device_limit:
            limits[name] = device_limit(os.path.join(args.dir, "device"), n * page_bytes)
            print(
                f"   O_DIRECT limit write {limits[name][0]:6.2f} GB/s"
                f"  read {limits[name][1]:6.2f} GB/s",
                flush=True,
            )
        del src, dst

    print()
    columns = [
        "workload",
        "system",
        "write GB/s",
        "cold read GB/s",
        "write vs HiCacheFile",
        "read vs HiCacheFile",
        "write % of device",
        "read % of device",
    ]
    print("| " + " | ".join(columns) + " |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, _, _ in workloads:
        base = next((r for r in results if r.workload == name and r.system == "HiCacheFile"), None)
        lim = limits.get(name)
        for r in (r for r in results if r.workload == name):
            w, rd = r.gbps(r.write_s), r.gbps(r.read_s)
            wr = f"{w / base.gbps(base.write_s):.2f}x" if base else "-"
            rr = f"{rd / base.gbps(base.read_s):.2f}x" if base else "-"
            wl = f"{100 * w / lim[0]:.0f}%" if lim else "-"
            rl = f"{100 * rd / lim[1]:.0f}%" if lim else "-"
            print(f"| {name} | {r.system} | {w:.2f} | {rd:.2f} | {wr} | {rr} | {wl} | {rl} |")
        if lim:
            print(
                f"| {name} | O_DIRECT sequential | {lim[0]:.2f} | {lim[1]:.2f} | | | 100% | 100% |"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "results": [
                        r.__dict__
                        | {"write_gbps": r.gbps(r.write_s), "read_gbps": r.gbps(r.read_s)}
                        for r in results
                    ],
                    "device_limit": limits,
                },
                f,
                indent=2,
            )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
