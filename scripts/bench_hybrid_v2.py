#!/usr/bin/env python3
"""Benchmark SGLang's v2 storage calls (hybrid models): HiCacheFile vs HiCacheLSM, one run.

Both backends get the same pages through the same calls: a KV pool (``kv``, page_first
K/V halves) plus SGLang's real ``MambaPoolHost`` (built on CPU) as the state pool, one
state per page. Pages come in chains of ``--chain`` pages, one v2 call per chain:

* **set**: ``batch_set_v2([kv transfer, mamba transfer])`` for every chain, then ``sync``;
* **exists**: ``batch_exists_v2(chain keys, [mamba TRAILING_PAGES window 1])`` for every
  chain, with every page stored (``--pages`` of them, 100k by default);
* **get**: page cache dropped (``sync; echo 3 > /proc/sys/vm/drop_caches``, root needed),
  then ``batch_get_v2([kv, mamba])`` for every chain; every byte is checked.

The device limit is measured on the same file system in the same run (sequential O_DIRECT,
as ``scripts/bench_hicache.py`` does). Usage, in the venv of scripts/setup_sglang_venv.sh
with sglang-lsm installed:

    python scripts/bench_hybrid_v2.py                    # 100k pages, 16 KiB KV pages
    python scripts/bench_hybrid_v2.py --pages 5000       # quick check
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_hicache import (  # noqa: E402
    GB,
    KVHalvesPool,
    device_limit,
    drop_caches,
    page_keys,
    storage_config,
)


class FlatKVPool(KVHalvesPool):
    """The K/V-halves pool with the flat-page calls HiCacheFile's v2 uses."""

    def get_data_page(self, index, flat: bool = True):
        return self.buffer[int(index)]

    def get_dummy_flat_data_page(self):
        return torch.zeros(self.page_bytes, dtype=torch.uint8)

    def set_from_flat_data_page(self, index, data_page):
        self.buffer[int(index)].copy_(data_page.view(torch.uint8).reshape(-1))


def mamba_pool(slots: int, state_kib: int):
    from sglang.srt.mem_cache.device_pool_info import MambaStateBufferInfo
    from sglang.srt.mem_cache.pool_host.mamba import MambaPoolHost

    # temporal: 2 layers x (state_kib KiB / 2 per layer) of float32; conv: 2 x 3 x 64 bf16.
    per_layer_floats = state_kib * 1024 // 2 // 4
    info = MambaStateBufferInfo(
        temporal=torch.zeros(2, slots, per_layer_floats // 64, 64, dtype=torch.float32),
        conv=(torch.zeros(2, slots, 3, 64, dtype=torch.bfloat16),),
    )
    return MambaPoolHost(
        info, 1.0, 0, device_capacity=slots, pin_memory=False, device="cpu", layout="page_first"
    )


def make_backend(system: str, root: str, kv_pool):
    from sglang.srt.mem_cache.storage.backend_factory import StorageBackendFactory

    extra = (
        {"file_storage_path": root}
        if system == "HiCacheFile"
        else {
            "backend_name": "lsm",
            "module_path": "sglang_lsm.hicache",
            "class_name": "HiCacheLSM",
            "interface_v1": 1,
            "storage_dir": root,
        }
    )
    cfg = storage_config(extra, model_name="bench/hybrid")
    kind = "file" if system == "HiCacheFile" else "dynamic"
    return StorageBackendFactory.create_backend(kind, cfg, kv_pool)


def run(system, root, keys, chain, kv_src, kv_dst, state_src, state_dst) -> dict:
    from sglang.srt.mem_cache.hicache_storage import (
        HiCacheStorageExtraInfo,
        PoolHitPolicy,
        PoolName,
        PoolTransfer,
    )

    os.makedirs(root, exist_ok=True)
    backend = make_backend(system, root, kv_src)
    n = len(keys)
    slot = torch.arange(chain, dtype=torch.int64)

    def register(kv_pool, state_pool):
        backend.register_mem_pool_host(kv_pool)
        for name, pool in ((PoolName.KV, kv_pool), (PoolName.MAMBA, state_pool)):
            backend.register_mem_host_pool_v2(pool, name)

    def transfers(lo, hi):
        return [
            PoolTransfer(name=PoolName.KV, keys=keys[lo:hi], host_indices=torch.arange(lo, hi)),
            PoolTransfer(name=PoolName.MAMBA, keys=keys[lo:hi], host_indices=slot[: hi - lo]),
        ]

    def states(lo):
        shape = state_src.temporal_buffer.shape
        return torch.randn(shape, generator=torch.Generator().manual_seed(lo))

    ok = True
    set_s = 0.0
    register(kv_src, state_src)
    for lo in range(0, n, chain):
        hi = min(lo + chain, n)
        # The state pool holds one chain's states at a time, as a host pool's slots would.
        state_src.temporal_buffer.copy_(states(lo))
        t = transfers(lo, hi)
        start = time.perf_counter()
        res = backend.batch_set_v2(t, HiCacheStorageExtraInfo())
        set_s += time.perf_counter() - start
        ok &= all(res[PoolName.KV]) and all(res[PoolName.MAMBA])
    start = time.perf_counter()
    if hasattr(backend, "store"):
        backend.store.flush()
    os.sync()
    set_s += time.perf_counter() - start

    exists_s, restorable = 0.0, 0
    for lo in range(0, n, chain):
        hi = min(lo + chain, n)
        probe = [PoolTransfer(name=PoolName.MAMBA, keys=keys[hi - 1 : hi],
                              hit_policy=PoolHitPolicy.TRAILING_PAGES)]
        start = time.perf_counter()
        res = backend.batch_exists_v2(keys[lo:hi], probe, HiCacheStorageExtraInfo())
        exists_s += time.perf_counter() - start
        restorable += res.kv_hit_pages
    ok &= restorable == n

    cold = drop_caches()
    get_s = 0.0
    register(kv_dst, state_dst)
    for lo in range(0, n, chain):
        hi = min(lo + chain, n)
        t = transfers(lo, hi)
        state_dst.temporal_buffer.zero_()
        start = time.perf_counter()
        res = backend.batch_get_v2(t, HiCacheStorageExtraInfo())
        get_s += time.perf_counter() - start
        ok &= all(res[PoolName.KV]) and all(res[PoolName.MAMBA])
        ok &= torch.equal(state_dst.temporal_buffer[: hi - lo], states(lo)[: hi - lo])
    ok &= torch.equal(kv_src.buffer, kv_dst.buffer)
    kv_dst.buffer.zero_()
    if hasattr(backend, "close"):
        backend.close()
    shutil.rmtree(root, ignore_errors=True)
    state_bytes = int(state_src.get_dummy_flat_data_page().numel())
    nbytes = n * (kv_src.page_bytes + state_bytes)
    return {
        "system": system,
        "pages": n,
        "bytes": nbytes,
        "set_s": set_s,
        "exists_s": exists_s,
        "exists_calls": (n + chain - 1) // chain,
        "get_s": get_s,
        "cold": cold,
        "ok": bool(ok),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/sglang-lsm-bench-v2", help="scratch directory")
    ap.add_argument("--pages", type=int, default=100_000)
    ap.add_argument("--chain", type=int, default=128, help="pages per v2 call")
    ap.add_argument("--kv-kib", type=int, default=16)
    ap.add_argument("--state-kib", type=int, default=8)
    ap.add_argument("--no-device-limit", action="store_true")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    n = args.pages
    keys = page_keys(n, "hybrid")
    kv_src = FlatKVPool(torch.randint(0, 256, (n, args.kv_kib << 10), dtype=torch.uint8))
    kv_dst = FlatKVPool(torch.zeros_like(kv_src.buffer))
    state_src, state_dst = mamba_pool(args.chain, args.state_kib), mamba_pool(args.chain, args.state_kib)
    results = [
        run(system, os.path.join(args.dir, system), keys, args.chain, kv_src, kv_dst, state_src, state_dst)
        for system in ("HiCacheFile", "HiCacheLSM")
    ]
    limit = None if args.no_device_limit else device_limit(args.dir, results[0]["bytes"])
    shutil.rmtree(args.dir, ignore_errors=True)

    file, lsm = results
    print(f"{n} pages: {args.kv_kib} KiB KV + {file['bytes'] // n - (args.kv_kib << 10)} B "
          f"Mamba state each, {args.chain} per call; cold reads: {file['cold'] and lsm['cold']}")
    if limit:
        print(f"device (O_DIRECT, same run): write {limit[0]:.2f} GB/s, read {limit[1]:.2f} GB/s")
    print(f"{'':14}{'HiCacheFile':>14}{'HiCacheLSM':>14}{'LSM/File':>10}")
    for what, key in (("set GB/s", "set_s"), ("cold get GB/s", "get_s")):
        a, b = file["bytes"] / file[key] / GB, lsm["bytes"] / lsm[key] / GB
        print(f"{what:14}{a:14.3f}{b:14.3f}{b / a:10.2f}")
    a = file["exists_s"] / file["exists_calls"] * 1e6
    b = lsm["exists_s"] / lsm["exists_calls"] * 1e6
    print(f"{'exists us/call':14}{a:14.1f}{b:14.1f}{a / b:10.2f}")
    print(f"bytes checked: HiCacheFile {file['ok']}, HiCacheLSM {lsm['ok']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "device_limit_gbps": limit, "results": results}, f, indent=2)
    return 0 if file["ok"] and lsm["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
