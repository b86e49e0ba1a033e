"""HiCacheLSM driven through SGLang's own classes (sglang 0.5.23, on CPU).

The backend is built by SGLang's StorageBackendFactory from the same dynamic config an
operator passes on the command line, and exercised with SGLang's real host KV pools
(``MHATokenToKVPoolHost`` / ``MLATokenToKVPoolHost``, built on CPU without pinned memory).
The pools' own ``get_data_page`` is the reference for where a page's bytes live, so the
pointer grouping is checked against SGLang, not against our reading of it.

``scripts/setup_sglang_venv.sh`` creates an environment where all of this imports.
"""

from __future__ import annotations

import hashlib
import struct

import pytest

torch = pytest.importorskip("torch")
hicache_storage = pytest.importorskip(
    "sglang.srt.mem_cache.hicache_storage",
    reason="sglang 0.5.23 is not importable; scripts/setup_sglang_venv.sh builds a venv with it",
)

from sglang.srt.mem_cache.hicache_storage import (  # noqa: E402
    HiCacheStorage,
    HiCacheStorageConfig,
    HiCacheStorageExtraInfo,
)
from sglang.srt.mem_cache.storage.backend_factory import StorageBackendFactory  # noqa: E402

from hostpool import StandInMHAPool, StandInMLAPool, page_indices  # noqa: E402

from sglang_lsm.hicache import HiCacheLSM  # noqa: E402

LAYERS, HEADS, HEAD_DIM, PAGE, DEVICE_TOKENS = 3, 2, 8, 4, 64
MLA_DIM, MLA_LORA, MLA_ROPE = 12, 8, 4
HOST_TOKENS = 256


def _real_pool_classes():
    try:
        from sglang.srt.mem_cache.device_pool_info import (
            KVBufferLayout,
            KVBuffers,
            MHABufferInfo,
            MLABufferInfo,
        )
        from sglang.srt.mem_cache.pool_host.mha import MHATokenToKVPoolHost
        from sglang.srt.mem_cache.pool_host.mla import MLATokenToKVPoolHost
    except Exception as e:  # noqa: BLE001 - the pools pull in much of SGLang
        return None, f"{type(e).__name__}: {e}"
    return (
        KVBufferLayout,
        KVBuffers,
        MHABufferInfo,
        MLABufferInfo,
        MHATokenToKVPoolHost,
        MLATokenToKVPoolHost,
    ), None


REAL, REAL_POOL_ERROR = _real_pool_classes()


def real_mha_pool(layout, dtype=torch.bfloat16):
    KVBufferLayout, KVBuffers, MHABufferInfo, _, MHAHost, _ = REAL
    k = tuple(torch.zeros(DEVICE_TOKENS, HEADS, HEAD_DIM, dtype=dtype) for _ in range(LAYERS))
    v = tuple(torch.zeros(DEVICE_TOKENS, HEADS, HEAD_DIM, dtype=dtype) for _ in range(LAYERS))
    info = MHABufferInfo(
        buffers=KVBuffers(
            k=k,
            v=v,
            k_data_ptrs=torch.tensor([t.data_ptr() for t in k], dtype=torch.uint64),
            v_data_ptrs=torch.tensor([t.data_ptr() for t in v], dtype=torch.uint64),
            layout=KVBufferLayout.NHD,
        ),
        page_size=PAGE,
        head_num=HEADS,
        head_dim=HEAD_DIM,
        v_head_dim=HEAD_DIM,
        dtype=dtype,
        device=torch.device("cpu"),
    )
    return MHAHost(
        info,
        2.0,
        0,
        PAGE,
        layout,
        pin_memory=False,
        device="cpu",
        device_capacity_tokens=DEVICE_TOKENS,
        start_layer=0,
        end_layer=LAYERS,
        host_token_capacity=HOST_TOKENS,
    )


def real_mla_pool(layout, dtype=torch.bfloat16):
    _, _, _, MLABufferInfo, _, MLAHost = REAL
    rows = tuple(torch.zeros(DEVICE_TOKENS, 1, MLA_DIM, dtype=dtype) for _ in range(LAYERS))
    info = MLABufferInfo(
        buffers=rows,
        data_ptrs=torch.tensor([t.data_ptr() for t in rows], dtype=torch.uint64),
        layer_indices=tuple(range(LAYERS)),
        device_layer_num=LAYERS,
        page_size=PAGE,
        kv_lora_rank=MLA_LORA,
        qk_rope_head_dim=MLA_ROPE,
        kv_cache_dim=MLA_DIM,
        dtype=dtype,
        device=torch.device("cpu"),
    )
    return MLAHost(
        info,
        2.0,
        0,
        PAGE,
        layout,
        pin_memory=False,
        device="cpu",
        device_capacity_tokens=DEVICE_TOKENS,
        start_layer=0,
        end_layer=LAYERS,
        target_layer_num=LAYERS,
        host_token_capacity=HOST_TOKENS,
    )


POOLS = [
    ("mha", "layer_first"),
    ("mha", "page_first"),
    ("mha", "page_first_direct"),
    ("mla", "layer_first"),
    ("mla", "page_first"),
    ("mla", "page_first_direct"),
]


def build_pool(kind, layout):
    """SGLang's real host pool when it can be built here, else the stand-in (noted)."""
    if REAL is not None:
        return (real_mha_pool if kind == "mha" else real_mla_pool)(layout), True
    if kind == "mha":
        pool = StandInMHAPool(
            layout,
            size=HOST_TOKENS,
            page_size=PAGE,
            layer_num=LAYERS,
            head_num=HEADS,
            head_dim=HEAD_DIM,
        )
    else:
        pool = StandInMLAPool(
            layout, size=HOST_TOKENS, page_size=PAGE, layer_num=LAYERS, kv_cache_dim=MLA_DIM
        )
    return pool, False


def page_keys(tokens, page_size, prior=None):
    """SGLang's page key chain: SHA-256 of the previous page's digest, then each token id as
    4-byte little-endian; hex-encoded."""
    keys = []
    for lo in range(0, len(tokens), page_size):
        h = hashlib.sha256()
        if prior is not None:
            h.update(bytes.fromhex(prior))
        for t in tokens[lo : lo + page_size]:
            h.update(struct.pack("<I", t))
        prior = h.hexdigest()
        keys.append(prior)
    return keys


def storage_config(tmp_path, kind, layout, **extra):
    return HiCacheStorageConfig(
        tp_rank=0,
        tp_size=1,
        pp_rank=0,
        pp_size=1,
        attn_cp_rank=0,
        attn_cp_size=1,
        is_mla_model=kind == "mla",
        enable_storage_metrics=True,
        is_page_first_layout=layout == "page_first",
        model_name="meta-llama/Meta-Llama-3-8B-Instruct",
        extra_config={
            "backend_name": "lsm",
            "module_path": "sglang_lsm.hicache",
            "class_name": "HiCacheLSM",
            "interface_v1": 1,
            "storage_dir": str(tmp_path / "l3"),
            "capacity_gb": 1,
            **extra,
        },
    )


def fill_random(pool, seed):
    gen = torch.Generator().manual_seed(seed)
    pool.kv_buffer.copy_(torch.randn(pool.kv_buffer.shape, generator=gen).to(pool.kv_buffer.dtype))


def flat_page(pool, start):
    if hasattr(pool, "get_data_page"):
        return pool.get_data_page(start, flat=True).clone()
    return pool.page_view(start).flatten()


@pytest.mark.parametrize("kind, layout", POOLS)
def test_factory_built_backend_moves_real_pages(tmp_path, kind, layout):
    pool, is_real = build_pool(kind, layout)
    cfg = storage_config(tmp_path, kind, layout)
    backend = StorageBackendFactory.create_backend("dynamic", cfg, pool)
    assert isinstance(backend, HiCacheStorage)
    assert isinstance(backend, HiCacheLSM)
    # What cache_controller does right after creating it.
    backend.register_mem_pool_host(pool)
    backend.on_host_pools_registered()

    fill_random(pool, seed=7)
    tokens = list(range(1000, 1000 + 10 * PAGE))
    keys = page_keys(tokens, PAGE)
    src = [5, 6, 7, 20, 21, 22, 30, 31, 40, 41]
    expected = [flat_page(pool, p * PAGE) for p in src]

    # Backup in two batches with the prefix chain, as the backup thread does.
    first = backend.batch_set_v1(
        keys[:4], page_indices(src[:4], PAGE), HiCacheStorageExtraInfo(prefix_keys=None)
    )
    rest = backend.batch_set_v1(
        keys[4:], page_indices(src[4:], PAGE), HiCacheStorageExtraInfo(prefix_keys=keys[:4])
    )
    assert first + rest == [True] * 10

    pool.kv_buffer.zero_()
    assert backend.batch_exists(keys[:4], HiCacheStorageExtraInfo(prefix_keys=None)) == 4
    assert backend.batch_exists(keys[4:], HiCacheStorageExtraInfo(prefix_keys=keys[:4])) == 6
    other = page_keys(tokens, PAGE, prior=keys[-1])
    assert backend.batch_exists(keys + other, HiCacheStorageExtraInfo(prefix_keys=None)) == 10

    dst = [50, 12, 49, 1, 2, 3, 60, 59, 58, 10]
    assert (
        backend.batch_get_v1(
            keys, page_indices(dst, PAGE), HiCacheStorageExtraInfo(prefix_keys=None)
        )
        == [True] * 10
    )
    for p, want in zip(dst, expected):
        assert torch.equal(flat_page(pool, p * PAGE), want), (kind, layout, p, is_real)

    stats = backend.get_stats()
    assert type(stats).__name__ in ("StorageMetrics", "LSMStorageMetrics")
    assert sum(stats.backup_pgs) == 10 and sum(stats.prefetch_pgs) == 10
    backend.close()


@pytest.mark.parametrize("layout", ["layer_first", "page_first"])
def test_generic_interface_like_cache_controller(tmp_path, layout):
    """Without interface_v1 SGLang moves flat pages through batch_set / batch_get."""
    pool, _ = build_pool("mha", layout)
    if not hasattr(pool, "get_dummy_flat_data_page"):
        pytest.skip(f"real host pool unavailable ({REAL_POOL_ERROR}); the generic path needs it")
    cfg = storage_config(tmp_path, "mha", layout, interface_v1=0)
    backend = StorageBackendFactory.create_backend("dynamic", cfg, pool)
    backend.register_mem_pool_host(pool)
    fill_random(pool, seed=3)
    keys = page_keys(list(range(3 * PAGE)), PAGE)
    src = [4, 9, 17]
    expected = [flat_page(pool, p * PAGE) for p in src]
    # cache_controller._generic_page_set
    assert backend.batch_set(keys, [pool.get_data_page(p * PAGE) for p in src]) is True
    pool.kv_buffer.zero_()
    # cache_controller._generic_page_get
    pages = backend.batch_get(keys, [pool.get_dummy_flat_data_page() for _ in keys])
    assert all(page is not None for page in pages)
    for p, page in zip([30, 31, 32], pages):
        pool.set_from_flat_data_page(p * PAGE, page)
    for p, want in zip([30, 31, 32], expected):
        assert torch.equal(flat_page(pool, p * PAGE), want)
    backend.close()


def test_real_host_pools_build_on_cpu():
    """Records whether SGLang's host pools can be built in this environment."""
    if REAL is None:
        pytest.skip(f"SGLang's host pool modules do not import here: {REAL_POOL_ERROR}")
    for layout in ("layer_first", "page_first", "page_first_direct"):
        assert real_mha_pool(layout).kv_buffer.device.type == "cpu"
        assert real_mla_pool(layout).kv_buffer.device.type == "cpu"


@pytest.mark.parametrize("kind, layout", POOLS)
def test_stand_in_matches_real_get_page_buffer_meta(kind, layout):
    """The stand-in used by test_hicache.py lists the same pointers and sizes as SGLang."""
    if REAL is None:
        pytest.skip(f"SGLang's host pool modules do not import here: {REAL_POOL_ERROR}")
    real = (real_mha_pool if kind == "mha" else real_mla_pool)(layout)
    if kind == "mha":
        stand_in = StandInMHAPool(
            layout,
            size=real.size,
            page_size=PAGE,
            layer_num=LAYERS,
            head_num=HEADS,
            head_dim=HEAD_DIM,
        )
    else:
        stand_in = StandInMLAPool(
            layout, size=real.size, page_size=PAGE, layer_num=LAYERS, kv_cache_dim=MLA_DIM
        )
    assert tuple(stand_in.kv_buffer.shape) == tuple(real.kv_buffer.shape)
    idx = page_indices([3, 0, 17], PAGE)
    real_ptrs, real_sizes = real.get_page_buffer_meta(idx)
    ours_ptrs, ours_sizes = stand_in.get_page_buffer_meta(idx)
    real_base, ours_base = real.kv_buffer.data_ptr(), stand_in.kv_buffer.data_ptr()
    assert [p - real_base for p in real_ptrs] == [p - ours_base for p in ours_ptrs]
    assert list(real_sizes) == list(ours_sizes)


def test_namespace_uses_real_config_fields(tmp_path):
    cfg = storage_config(tmp_path, "mha", "page_first")
    pool, _ = build_pool("mha", "page_first")
    backend = StorageBackendFactory.create_backend("dynamic", cfg, pool)
    backend.register_mem_pool_host(pool)
    info = backend.namespace_info
    assert info["model"] == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert info["tp"] == [0, 1] and info["pp"] == [0, 1] and info["cp"] == [0, 1]
    assert info["pool"]["layout"] == "page_first"
    assert info["pool"]["dtype"] == "torch.bfloat16"
    assert info["pool"]["page_size"] == PAGE
    backend.close()


def test_mla_tp2_writer_and_follower_with_real_config(tmp_path):
    """MLA with tp_size 2, as SGLang configures it: rank 0 is the storage writer (SGLang's own
    ``is_storage_writer``), rank 1 follows rank 0's store and prefetches the same pages."""
    pools = [build_pool("mla", "page_first")[0] for _ in range(2)]
    backends = []
    for rank, pool in enumerate(pools):
        cfg = storage_config(tmp_path, "mla", "page_first", follower_refresh_ms=0)
        cfg.tp_rank, cfg.tp_size = rank, 2
        backend = StorageBackendFactory.create_backend("dynamic", cfg, pool)
        backend.register_mem_pool_host(pool)
        backend.on_host_pools_registered()
        assert backend.is_writer == cfg.is_storage_writer == (rank == 0)
        backends.append(backend)
    writer, follower = backends

    fill_random(pools[0], seed=11)
    tokens = list(range(5000, 5000 + 6 * PAGE))
    keys = page_keys(tokens, PAGE)
    src, dst = [2, 3, 4, 7, 8, 9], [40, 41, 42, 50, 51, 52]
    info = HiCacheStorageExtraInfo(prefix_keys=None)
    assert writer.batch_set_v1(keys, page_indices(src, PAGE), info) == [True] * 6
    assert follower.batch_exists(keys, info) == 6
    assert follower.batch_get_v1(keys, page_indices(dst, PAGE), info) == [True] * 6
    for s, d in zip(src, dst):
        assert torch.equal(flat_page(pools[1], d * PAGE), flat_page(pools[0], s * PAGE))
    follower.close()
    writer.close()
