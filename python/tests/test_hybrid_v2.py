"""SGLang's v2 storage calls (hybrid models) against the real sglang 0.5.23 classes.

The backend is built by SGLang's ``StorageBackendFactory``. Sidecar pools:

* ``MambaPoolHost``, SGLang's real class, built on CPU (pointer I/O through its
  ``get_page_buffer_meta``), and the same class with a slot side state, whose
  ``get_page_buffer_meta`` refuses, so pages move as flat data pages.
* ``StandInIndexerPool``: the DSA indexer pool (``DSAIndexerPoolHost``) needs a CUDA-era
  ``DSATokenToKVPool`` device pool to construct, so this stand-in follows the real class's
  ``page_first`` contract: one pointer per page of ``layer_num * stride`` bytes, and the
  same flat-page methods.

Hit policies are checked against SGLang's own ``HiCacheFile.batch_exists_v2`` on the same
stored set, including sparse ``restorable_prefix_pages``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip(
    "sglang.srt.mem_cache.hicache_storage",
    reason="sglang 0.5.23 is not importable; scripts/setup_sglang_venv.sh builds a venv with it",
)

from sglang.srt.mem_cache.device_pool_info import MambaStateBufferInfo  # noqa: E402
from sglang.srt.mem_cache.hicache_storage import (  # noqa: E402
    HiCacheFile,
    HiCacheStorageConfig,
    HiCacheStorageExtraInfo,
    PoolHitPolicy,
    PoolName,
    PoolTransfer,
)
from sglang.srt.mem_cache.pool_host.mamba import MambaPoolHost  # noqa: E402
from sglang.srt.mem_cache.storage.backend_factory import StorageBackendFactory  # noqa: E402

from hostpool import StandInMHAPool, page_indices  # noqa: E402

PAGE = 4
SLOTS = 64
MODEL = "Qwen/Qwen3-Next-80B-A3B-Instruct"
HERE = os.path.dirname(os.path.abspath(__file__))


def mamba_pool(side_state: bool = False) -> MambaPoolHost:
    extra = (torch.zeros(SLOTS, 6, dtype=torch.int32),) if side_state else ()
    info = MambaStateBufferInfo(
        temporal=torch.zeros(2, SLOTS, 4, 8, dtype=torch.float32),
        conv=(torch.zeros(2, SLOTS, 3, 16, dtype=torch.bfloat16),),
        extra_checkpoint_buffers=extra,
    )
    return MambaPoolHost(
        info, 1.0, 0, device_capacity=SLOTS, pin_memory=False, device="cpu", layout="page_first"
    )


class StandInIndexerPool:
    """``DSAIndexerPoolHost`` (page_first) as the storage path sees it."""

    def __init__(self, page_size: int = PAGE, layer_num: int = 3, stride: int = 132):
        self.page_size = page_size
        self.layout = "page_first"
        self.layer_num = layer_num
        self.indexer_page_stride_size = stride
        self.indexer_dtype = torch.uint8
        self.dtype = torch.uint8
        self.page_num = SLOTS
        self.buffer = torch.zeros(SLOTS, layer_num, 1, stride, dtype=torch.uint8)

    def get_page_buffer_meta(self, indices):
        assert len(indices) % self.page_size == 0
        stride = self.layer_num * self.indexer_page_stride_size
        base = self.buffer.data_ptr()
        pages = [int(indices[i]) // self.page_size for i in range(0, len(indices), self.page_size)]
        return [base + p * stride for p in pages], [stride] * len(pages)

    def get_data_page(self, index, flat: bool = True):
        page = self.buffer[int(index) // self.page_size : int(index) // self.page_size + 1]
        return page.flatten() if flat else page

    def get_dummy_flat_data_page(self):
        return torch.zeros(self.layer_num * self.indexer_page_stride_size, dtype=torch.uint8)

    def set_from_flat_data_page(self, index, data_page):
        p = int(index) // self.page_size
        self.buffer[p : p + 1] = data_page.reshape(1, self.layer_num, 1, -1)


def config(tmp_path, **extra) -> HiCacheStorageConfig:
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
        model_name=MODEL,
        extra_config={
            "backend_name": "lsm",
            "module_path": "sglang_lsm.hicache",
            "class_name": "HiCacheLSM",
            "interface_v1": 1,
            "storage_dir": str(tmp_path / "l3"),
            **extra,
        },
    )


def backend_with_pools(tmp_path, pools, **extra):
    kv = StandInMHAPool("page_first", size=SLOTS * PAGE, page_size=PAGE)
    backend = StorageBackendFactory.create_backend("dynamic", config(tmp_path, **extra), kv)
    # What the hybrid cache controller does after creating it: the anchor, then every pool.
    backend.register_mem_pool_host(kv)
    for name, pool in pools.items():
        backend.register_mem_host_pool_v2(pool, name)
    backend.on_host_pools_registered()
    return backend, kv


def keys_for(n: int, tag: str = "p") -> list[str]:
    return [f"{tag}{i:04d}" + "0" * 59 for i in range(n)]


def fill(tensor: torch.Tensor, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    if tensor.dtype.is_floating_point:
        tensor.copy_(torch.randn(tensor.shape, generator=gen).to(tensor.dtype))
    else:
        tensor.copy_(torch.randint(0, 100, tensor.shape, generator=gen).to(tensor.dtype))


def pool_tensors(pool) -> list[torch.Tensor]:
    if isinstance(pool, StandInIndexerPool):
        return [pool.buffer]
    return [pool.temporal_buffer, *pool.conv_buffer, *getattr(pool, "slot_state_buffers", [])]


def put_kv(backend, kv, keys, pages):
    ok = backend.batch_set_v1(keys, page_indices(pages, PAGE))
    assert ok == [True] * len(keys)


def transfer(name, keys, indices, policy=PoolHitPolicy.ALL_PAGES):
    return PoolTransfer(
        name=name,
        keys=keys,
        host_indices=torch.tensor(indices, dtype=torch.int64),
        hit_policy=policy,
    )


POOL_KINDS = {
    "mamba_pointers": (PoolName.MAMBA, lambda: mamba_pool(False), 1, "pointers"),
    "mamba_flat": (PoolName.MAMBA, lambda: mamba_pool(True), 1, "flat"),
    "indexer": (PoolName.INDEXER, StandInIndexerPool, PAGE, "pointers"),
}


@pytest.mark.parametrize("kind", sorted(POOL_KINDS))
def test_round_trip_every_pool_kind(tmp_path, kind):
    name, make, pool_page, io = POOL_KINDS[kind]
    pool = make()
    backend, kv = backend_with_pools(tmp_path, {name: pool})
    assert backend._pools[str(name.value)].io == io
    keys = keys_for(6)
    slots = [3, 9, 17, 20, 41, 50]
    host = [s * pool_page + t for s in slots for t in range(pool_page)]
    for i, t in enumerate(pool_tensors(pool)):
        fill(t, seed=i)
    want = [pool.get_data_page(s * pool_page, flat=True).clone() for s in slots]

    result = backend.batch_set_v2([transfer(name, keys, host)])
    assert result[name] == [True] * 6
    put_kv(backend, kv, keys, range(6))

    for t in pool_tensors(pool):
        t.zero_()
    other = [1, 2, 4, 5, 6, 7]
    other_host = [s * pool_page + t for s in other for t in range(pool_page)]
    got = backend.batch_get_v2([transfer(name, keys, other_host)])
    assert got[name] == [True] * 6
    for s, expected in zip(other, want):
        assert torch.equal(pool.get_data_page(s * pool_page, flat=True), expected)
    res = backend.batch_exists_v2(keys, [transfer(name, keys, host)])
    assert (res.kv_hit_pages, res.restorable_prefix_pages) == (6, [1, 2, 3, 4, 5, 6])
    backend.close()


def _stored_set_in_both(tmp_path, seed: int):
    """One random stored set, written to HiCacheLSM and to HiCacheFile alike."""
    rng = random.Random(seed)
    n = 24
    keys = keys_for(n, tag=f"s{seed}")
    kv_n = rng.randint(0, n)
    mamba_pages = sorted(rng.sample(range(n), rng.randint(0, n)))
    indexer_pages = list(range(rng.randint(0, n)))
    if rng.random() < 0.5:  # a gap in the indexer run
        indexer_pages = [p for p in indexer_pages if p != rng.randrange(n)]

    mamba, indexer = mamba_pool(), StandInIndexerPool()
    pools = {PoolName.MAMBA: mamba, PoolName.INDEXER: indexer}
    ours, kv = backend_with_pools(tmp_path / "ours", pools)
    theirs = HiCacheFile(config(tmp_path), file_path=str(tmp_path / "file"))
    for name, pool in pools.items():
        theirs.register_mem_host_pool_v2(pool, name)
    put_kv(ours, kv, keys[:kv_n], range(kv_n))
    for k in keys[:kv_n]:
        assert theirs.set(k, torch.zeros(16, dtype=torch.uint8))
    for backend in (ours, theirs):
        if mamba_pages:
            t = transfer(PoolName.MAMBA, [keys[p] for p in mamba_pages], list(range(len(mamba_pages))))
            assert all(backend.batch_set_v2([t])[PoolName.MAMBA])
        if indexer_pages:
            host = [p * PAGE + j for p in range(len(indexer_pages)) for j in range(PAGE)]
            t = transfer(PoolName.INDEXER, [keys[p] for p in indexer_pages], host)
            assert all(backend.batch_set_v2([t])[PoolName.INDEXER])
    return ours, theirs, keys


@pytest.mark.parametrize("seed", range(12))
def test_hit_policies_answer_like_hicache_file(tmp_path, seed):
    ours, theirs, keys = _stored_set_in_both(tmp_path, seed)
    rng = random.Random(1000 + seed)
    for _ in range(6):
        span = keys[: rng.randint(1, len(keys))]
        window = rng.randint(1, 4)
        transfers = [
            PoolTransfer(
                name=PoolName.MAMBA,
                keys=span[-window:],
                hit_policy=PoolHitPolicy.TRAILING_PAGES,
            ),
            PoolTransfer(name=PoolName.INDEXER, keys=span, hit_policy=PoolHitPolicy.ALL_PAGES),
        ]
        rng.shuffle(transfers)
        for subset in (transfers, transfers[:1], []):
            a = ours.batch_exists_v2(span, subset, HiCacheStorageExtraInfo())
            b = theirs.batch_exists_v2(span, subset, HiCacheStorageExtraInfo())
            assert a.kv_hit_pages == b.kv_hit_pages, (seed, window)
            assert a.restorable_prefix_pages == b.restorable_prefix_pages, (seed, window)
            assert {str(k): v for k, v in a.extra_pool_hit_pages.items()} == {
                str(k): v for k, v in b.extra_pool_hit_pages.items()
            }
    ours.close()


def test_block_groups_reports_whole_blocks_and_never_gates(tmp_path):
    backend, kv = backend_with_pools(tmp_path, {PoolName.DEEPSEEK_V4_C4: StandInIndexerPool()})
    keys = keys_for(10)
    put_kv(backend, kv, keys, range(10))
    stored = [0, 1, 2, 3, 4, 5, 7]  # blocks of 3: [0,3) and [3,6) whole, [6,9) not
    host = [i * PAGE + j for i in range(len(stored)) for j in range(PAGE)]
    t = transfer(PoolName.DEEPSEEK_V4_C4, [keys[p] for p in stored], host)
    assert all(backend.batch_set_v2([t])[PoolName.DEEPSEEK_V4_C4])
    probe = PoolTransfer(
        name=PoolName.DEEPSEEK_V4_C4,
        keys=keys,
        hit_policy=PoolHitPolicy.BLOCK_GROUPS,
        block_pages=3,
        group_pages=1,
    )
    res = backend.batch_exists_v2(keys, [probe])
    assert res.kv_hit_pages == 10, "BLOCK_GROUPS never gates the KV hit"
    assert res.extra_pool_hit_pages[PoolName.DEEPSEEK_V4_C4] == 6
    backend.close()


def test_bad_input_gives_false_and_never_raises(tmp_path, caplog):
    mamba = mamba_pool()
    backend, kv = backend_with_pools(tmp_path, {PoolName.MAMBA: mamba})
    keys = keys_for(3)
    put_kv(backend, kv, keys, range(3))
    # A pool that was never registered.
    res = backend.batch_set_v2([transfer(PoolName.SWA, keys, [0, 1, 2])])
    assert res[PoolName.SWA] == [False] * 3
    assert backend.batch_get_v2([transfer(PoolName.SWA, keys, [0, 1, 2])])[PoolName.SWA] == [
        False
    ] * 3
    none = backend.batch_exists_v2(keys, [transfer(PoolName.SWA, keys, [0, 1, 2])])
    assert none.kv_hit_pages == 0 and none.restorable_prefix_pages == []
    assert sum("never registered" in r.message for r in caplog.records) == 1, "one log line"
    # An index tensor of the wrong length.
    res = backend.batch_set_v2([transfer(PoolName.MAMBA, keys, [0, 1])])
    assert res[PoolName.MAMBA] == [False] * 3
    assert any("host indices" in r.message for r in caplog.records)
    # A host pool that cannot describe its pages: logged at registration, then misses.
    backend.register_mem_host_pool_v2(object(), PoolName.AUXILIARY_SWA)
    res = backend.batch_set_v2([transfer(PoolName.AUXILIARY_SWA, keys, [0, 1, 2])])
    assert res[PoolName.AUXILIARY_SWA] == [False] * 3
    # No keys at all.
    assert backend.batch_exists_v2([], []).kv_hit_pages == 0
    assert backend.batch_get_v2([transfer(PoolName.MAMBA, [], [])]) == {PoolName.MAMBA: []}
    backend.close()


def test_a_pool_registered_again_with_another_layout_never_reads_old_bytes(tmp_path):
    backend, kv = backend_with_pools(tmp_path, {PoolName.MAMBA: mamba_pool(False)})
    keys = keys_for(2)
    put_kv(backend, kv, keys, range(2))
    assert all(backend.batch_set_v2([transfer(PoolName.MAMBA, keys, [0, 1])])[PoolName.MAMBA])
    backend.register_mem_host_pool_v2(mamba_pool(False), PoolName.MAMBA)  # same layout
    assert all(backend.batch_get_v2([transfer(PoolName.MAMBA, keys, [5, 6])])[PoolName.MAMBA])
    backend.register_mem_host_pool_v2(mamba_pool(True), PoolName.MAMBA)  # a side state more
    got = backend.batch_get_v2([transfer(PoolName.MAMBA, keys, [5, 6])])
    assert got[PoolName.MAMBA] == [False, False], "pages of the old layout are not read"
    backend.close()


def test_eviction_keeps_a_pages_pools_together(tmp_path):
    mamba = mamba_pool()
    backend, kv = backend_with_pools(tmp_path, {PoolName.MAMBA: mamba}, capacity_gb=0.02)
    for i, t in enumerate(pool_tensors(mamba)):
        fill(t, seed=i)
    chains = []
    for c in range(800):
        keys = keys_for(8, tag=f"c{c:03d}")
        # A state at the end of each chain, backed up before its KV pages, as SGLang does.
        backend.batch_set_v2([transfer(PoolName.MAMBA, keys[-1:], [c % SLOTS])])
        backend.batch_set_v1(keys, page_indices(range(8), PAGE))
        chains.append(keys)
    assert backend.engine_stats()["evicted_pages"] > 0
    store, prefix = backend.store, backend._pools["mamba"].prefix
    kv_prefix = backend._prefix_v1
    restorable = 0
    for keys in chains:
        state = store.exists(prefix + keys[-1])
        kv_present = store.exists_batch([kv_prefix + k for k in keys])
        if state:
            assert all(kv_present), "a state outlived its KV pages"
        res = backend.batch_exists_v2(
            keys, [PoolTransfer(name=PoolName.MAMBA, keys=keys[-1:], hit_policy=PoolHitPolicy.TRAILING_PAGES)]
        )
        if res.kv_hit_pages == 8:
            restorable += 1
    assert restorable > 0
    backend.close()


_WRITER = textwrap.dedent(
    """
    import sys, time, torch
    sys.path.insert(0, {here!r})
    import test_hybrid_v2 as t
    from sglang.srt.mem_cache.hicache_storage import PoolName
    backend, kv = t.backend_with_pools(__import__("pathlib").Path({tmp!r}), {{PoolName.MAMBA: t.mamba_pool()}})
    done = t.keys_for(4, tag="done")
    backend.batch_set_v2([t.transfer(PoolName.MAMBA, done[-1:], [1])])
    backend.batch_set_v1(done, t.page_indices(range(4), t.PAGE))
    half = t.keys_for(4, tag="half")
    backend.batch_set_v2([t.transfer(PoolName.MAMBA, half[-1:], [2])])
    print("sidecar-written", flush=True)
    time.sleep(60)
    """
)


def test_sigkill_between_pools_never_leaves_a_restorable_page(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER.format(here=HERE, tmp=str(tmp_path))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline()
        assert line.strip() == "sidecar-written", line
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    backend, _ = backend_with_pools(tmp_path, {PoolName.MAMBA: mamba_pool()})

    def trailing(keys):
        return [PoolTransfer(name=PoolName.MAMBA, keys=keys[-1:], hit_policy=PoolHitPolicy.TRAILING_PAGES)]

    done, half = keys_for(4, tag="done"), keys_for(4, tag="half")
    res = backend.batch_exists_v2(done, trailing(done))
    assert (res.kv_hit_pages, res.restorable_prefix_pages) == (4, [4]), "acknowledged pages survive"
    res = backend.batch_exists_v2(half, trailing(half))
    assert res.kv_hit_pages == 0 and res.restorable_prefix_pages == [], "KV never written"
    backend.close()


def test_two_replicas_share_hybrid_pages_through_the_node_service(tmp_path):
    """With ``"server"``, a page and its state backed up by one replica restore on another."""
    from service_util import Service, remove_dir, socket_dir

    sockdir = socket_dir()
    svc = Service(tmp_path / "store", sockdir / "kv.sock", log_dir=tmp_path)
    try:
        svc.start()

        def replica(pool):
            kv = StandInMHAPool("page_first", size=SLOTS * PAGE, page_size=PAGE)
            cfg = config(tmp_path)
            cfg.extra_config = {
                k: v for k, v in cfg.extra_config.items() if k != "storage_dir"
            } | {"server": str(svc.socket)}
            backend = StorageBackendFactory.create_backend("dynamic", cfg, kv)
            backend.register_mem_pool_host(kv)
            backend.register_mem_host_pool_v2(pool, PoolName.MAMBA)
            backend.on_host_pools_registered()
            return backend, kv

        pool_a, pool_b = mamba_pool(), mamba_pool()
        a, kv_a = replica(pool_a)
        b, _ = replica(pool_b)
        for i, t in enumerate(pool_tensors(pool_a)):
            fill(t, seed=i)
        keys = keys_for(5, tag="shared")
        assert a.batch_set_v2([transfer(PoolName.MAMBA, keys[-1:], [7])])[PoolName.MAMBA] == [True]
        put_kv(a, kv_a, keys, range(5))
        probe = [PoolTransfer(name=PoolName.MAMBA, keys=keys[-1:], hit_policy=PoolHitPolicy.TRAILING_PAGES)]
        res = b.batch_exists_v2(keys, probe, HiCacheStorageExtraInfo())
        assert (res.kv_hit_pages, res.restorable_prefix_pages) == (5, [5])
        assert b.batch_get_v2([transfer(PoolName.MAMBA, keys[-1:], [3])])[PoolName.MAMBA] == [True]
        assert torch.equal(pool_b.get_data_page(3), pool_a.get_data_page(7))
        a.close()
        b.close()
    finally:
        svc.kill()
        remove_dir(sockdir)
