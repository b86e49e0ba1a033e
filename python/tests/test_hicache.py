"""HiCacheLSM against host-pool stand-ins that reproduce SGLang's get_page_buffer_meta."""

from __future__ import annotations

import logging
import os
import threading
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from hostpool import (  # noqa: E402
    MHA_LAYOUTS,
    MLA_LAYOUTS,
    StandInMHAPool,
    StandInMLAPool,
    page_indices,
)

from sglang_lsm import InvalidArgumentError, StoreLockedError  # noqa: E402
from sglang_lsm.hicache import HiCacheLSM  # noqa: E402


def make_config(storage_dir, **overrides):
    """The fields of sglang 0.5.23's HiCacheStorageConfig, as plain attributes."""
    extra = {"interface_v1": 1, "storage_dir": str(storage_dir)}
    extra.update(overrides.pop("extra", {}))
    fields = dict(
        tp_rank=0,
        tp_size=1,
        pp_rank=0,
        pp_size=1,
        attn_cp_rank=0,
        attn_cp_size=1,
        is_mla_model=False,
        enable_storage_metrics=False,
        is_page_first_layout=True,
        model_name="test/model",
        tp_lcm_size=None,
        should_split_heads=False,
        dp_rank=0,
        extra_config=extra,
        dcp_size=1,
        dcp_rank=0,
        logical_page_size=None,
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


def make_backend(tmp_path, pool, **overrides):
    cfg = make_config(tmp_path / "l3", is_mla_model=isinstance(pool, StandInMLAPool), **overrides)
    backend = HiCacheLSM(cfg, {})
    backend.register_mem_pool_host(pool)
    backend.on_host_pools_registered()
    return backend


def keys_for(prefix, n):
    return [f"{prefix}{i:060d}" for i in range(n)]


ALL_POOLS = [("mha", layout) for layout in MHA_LAYOUTS] + [
    ("mla", layout) for layout in MLA_LAYOUTS
]


def new_pool(kind, layout, **kw):
    return StandInMHAPool(layout, **kw) if kind == "mha" else StandInMLAPool(layout, **kw)


@pytest.mark.parametrize("kind, layout", ALL_POOLS)
def test_v1_round_trip_moves_every_page_to_its_place(tmp_path, kind, layout):
    pool = new_pool(kind, layout)
    backend = make_backend(tmp_path, pool)
    gen = torch.Generator().manual_seed(1)
    src_pages = [3, 7, 8, 20, 21]
    for p in src_pages:
        pool.fill_page(p * pool.page_size, gen)
    expected = [pool.page_view(p * pool.page_size) for p in src_pages]
    keys = keys_for("a", len(src_pages))

    assert backend.batch_set_v1(keys, page_indices(src_pages, pool.page_size)) == [True] * 5
    # Each key holds exactly its own page, parts concatenated in pointer order.
    for key, p in zip(keys, src_pages):
        assert backend.store.get(backend._prefix_v1 + key) == pool.part_order_bytes(
            p * pool.page_size
        )
    pool.kv_buffer.zero_()

    # Read into different slots, in batches split differently from the write.
    dst_pages = [40, 2, 33, 11, 50]
    got = backend.batch_get_v1(keys[:2], page_indices(dst_pages[:2], pool.page_size))
    got += backend.batch_get_v1(keys[2:], page_indices(dst_pages[2:], pool.page_size))
    assert got == [True] * 5
    for p, want in zip(dst_pages, expected):
        assert torch.equal(pool.page_view(p * pool.page_size), want), (kind, layout, p)
    # Nothing else was written.
    touched = sum(pool.page_view(p * pool.page_size).abs().sum() for p in dst_pages)
    assert pool.kv_buffer.abs().sum() == touched
    backend.close()


def test_misses_and_partial_hits(tmp_path):
    pool = StandInMHAPool("page_first")
    backend = make_backend(tmp_path, pool)
    keys = keys_for("m", 6)
    assert backend.batch_get_v1(keys, page_indices(range(6), 4)) == [False] * 6
    backend.batch_set_v1(keys[:3], page_indices([0, 1, 2], 4))
    assert backend.batch_get_v1(keys, page_indices(range(10, 16), 4)) == [True] * 3 + [False] * 3
    assert backend.batch_exists(keys) == 3
    assert backend.batch_exists(keys[1:]) == 2
    assert backend.batch_exists(keys[3:]) == 0
    assert backend.exists(keys[0]) and not backend.exists(keys[4])
    backend.close()


def test_batch_exists_with_prefix_keys(tmp_path):
    pool = StandInMHAPool("page_first")
    backend = make_backend(tmp_path, pool)
    chain = keys_for("c", 8)
    info0 = SimpleNamespace(prefix_keys=None)
    assert backend.batch_set_v1(chain[:4], page_indices(range(4), 4), info0) == [True] * 4
    info1 = SimpleNamespace(prefix_keys=chain[:4])
    assert backend.batch_set_v1(chain[4:7], page_indices(range(4, 7), 4), info1) == [True] * 3
    assert backend.batch_exists(chain[:4], SimpleNamespace(prefix_keys=[])) == 4
    assert backend.batch_exists(chain[4:], SimpleNamespace(prefix_keys=chain[:4])) == 3
    assert backend.batch_exists(chain, None) == 7
    backend.close()


def test_existing_pages_count_as_written(tmp_path):
    pool = StandInMHAPool("layer_first")
    backend = make_backend(tmp_path, pool)
    keys = keys_for("e", 3)
    assert backend.batch_set_v1(keys, page_indices([0, 1, 2], 4)) == [True] * 3
    assert backend.batch_set_v1(keys, page_indices([3, 4, 5], 4)) == [True] * 3
    backend.close()


def test_data_survives_restart(tmp_path):
    pool = StandInMHAPool("page_first")
    gen = torch.Generator().manual_seed(5)
    pool.fill_page(0, gen)
    want = pool.page_view(0)
    backend = make_backend(tmp_path, pool)
    backend.batch_set_v1(keys_for("r", 1), page_indices([0], 4))
    backend.close()

    pool2 = StandInMHAPool("page_first")
    backend2 = make_backend(tmp_path, pool2)
    assert backend2.batch_exists(keys_for("r", 1)) == 1
    assert backend2.batch_get_v1(keys_for("r", 1), page_indices([9], 4)) == [True]
    assert torch.equal(pool2.page_view(36), want)
    backend2.close()


# --------------------------------------------------------------------------- namespaces


@pytest.mark.parametrize(
    "second_pool, overrides",
    [
        (lambda: StandInMHAPool("layer_first"), {}),
        (lambda: StandInMHAPool("page_first", dtype=torch.float16), {}),
        (lambda: StandInMHAPool("page_first", page_size=8), {}),
        (lambda: StandInMHAPool("page_first", head_dim=16), {}),
        (lambda: StandInMHAPool("page_first"), {"extra": {"namespace": "tenant-b"}}),
        (lambda: StandInMLAPool("page_first"), {}),
    ],
    ids=["layout", "dtype", "page_size", "head_dim", "user_namespace", "mla"],
)
def test_differing_deployments_do_not_share_pages(tmp_path, second_pool, overrides):
    """Same storage_dir, model and ranks (so the same store directory), different bytes."""
    pool = StandInMHAPool("page_first")
    first = make_backend(tmp_path, pool)
    keys = keys_for("n", 4)
    assert first.batch_set_v1(keys, page_indices(range(4), 4)) == [True] * 4
    assert first.batch_exists(keys) == 4
    first_path = first.store_path
    first.close()

    pool2 = second_pool()
    second = make_backend(tmp_path, pool2, **overrides)
    assert second.store_path == first_path
    assert second.batch_exists(keys) == 0
    assert second.batch_get_v1(keys, page_indices(range(4), pool2.page_size)) == [False] * 4
    second.close()


def test_tp_ranks_are_separate_namespaces_and_stores(tmp_path):
    pool0, pool1 = StandInMHAPool("page_first"), StandInMHAPool("page_first")
    # Both ranks open at the same time under one storage_dir: no lock fight.
    rank0 = make_backend(tmp_path, pool0, tp_rank=0, tp_size=2, extra={"capacity_gb": 1})
    rank1 = make_backend(tmp_path, pool1, tp_rank=1, tp_size=2, extra={"capacity_gb": 1})
    assert rank0.store_path != rank1.store_path
    assert os.path.dirname(rank0.store_path) == os.path.dirname(rank1.store_path)
    assert rank0.engine_stats()["capacity_bytes"] == 500_000_000
    assert rank1.engine_stats()["capacity_bytes"] == 500_000_000
    keys = keys_for("t", 2)
    assert rank0.batch_set_v1(keys, page_indices([0, 1], 4)) == [True, True]
    assert rank1.batch_exists(keys) == 0
    assert rank0._prefix_v1 != rank1._prefix_v1
    rank0.close()
    rank1.close()


def test_same_rank_twice_is_refused_clearly(tmp_path):
    first = make_backend(tmp_path, StandInMHAPool("page_first"))
    with pytest.raises(StoreLockedError):
        make_backend(tmp_path, StandInMHAPool("page_first"))
    first.close()


def test_dp_rank_gets_its_own_directory_but_same_namespace(tmp_path):
    a = make_backend(tmp_path, StandInMHAPool("page_first"), dp_rank=0)
    b = make_backend(tmp_path, StandInMHAPool("page_first"), dp_rank=1)
    assert a.store_path != b.store_path
    assert a._prefix_v1 == b._prefix_v1
    a.close()
    b.close()


# --------------------------------------------------------------------------- MLA rules


def test_mla_followers_read_what_the_writer_rank_stores(tmp_path):
    """MLA with tp_size 2: rank 0 writes (SGLang's is_storage_writer), rank 1 follows its
    store through the log and reads the same bytes into its own pool."""
    cfg = dict(tp_size=2, extra={"capacity_gb": 1, "follower_refresh_ms": 0})
    pool0, pool1 = StandInMLAPool("page_first"), StandInMLAPool("page_first")
    writer = make_backend(tmp_path, pool0, tp_rank=0, **cfg)
    follower = make_backend(tmp_path, pool1, tp_rank=1, **cfg)
    assert writer.is_writer and not follower.is_writer
    assert follower.store_path == writer.store_path
    assert writer._prefix_v1 == follower._prefix_v1, "MLA keys do not depend on the TP rank"
    assert writer.capacity_bytes == 10**9, "only writer ranks share the budget"

    keys = keys_for("m", 6)
    src, dst = [3, 4, 5, 9, 10, 11], [20, 21, 22, 30, 31, 32]
    gen = torch.Generator().manual_seed(3)
    for p in src:
        pool0.fill_page(p * pool0.page_size, gen)
    assert writer.batch_set_v1(keys, page_indices(src, pool0.page_size)) == [True] * 6
    assert follower.batch_exists(keys) == 6
    assert follower.batch_get_v1(keys, page_indices(dst, pool1.page_size)) == [True] * 6
    for s_, d in zip(src, dst):
        assert torch.equal(
            pool1.page_view(d * pool1.page_size), pool0.page_view(s_ * pool0.page_size)
        )
    # A follower stores nothing and clears nothing; it sees the writer's clear.
    assert follower.batch_set_v1(keys_for("n", 2), page_indices([1, 2], pool1.page_size)) == [
        False,
        False,
    ]
    assert follower.clear() is True and follower.batch_exists(keys) == 6
    assert writer.clear() is True
    assert follower.batch_exists(keys) == 0
    assert follower.engine_stats()["frames_applied"] >= 2
    follower.close()
    writer.close()


def test_mla_follower_can_start_before_its_writer(tmp_path):
    cfg = dict(tp_size=4, extra={"follower_refresh_ms": 0})
    pool = StandInMLAPool("layer_first")
    follower = make_backend(tmp_path, pool, tp_rank=3, **cfg)
    keys = keys_for("k", 2)
    assert follower.batch_exists(keys) == 0
    writer = make_backend(tmp_path, StandInMLAPool("layer_first"), tp_rank=0, **cfg)
    assert writer.batch_set_v1(keys, page_indices([1, 2], pool.page_size)) == [True, True]
    assert follower.batch_exists(keys) == 2
    writer.close()
    follower.close()


def test_mla_namespace_ignores_tp_rank_under_dcp(tmp_path):
    """With DCP, each MLA rank writes its own shard; the key namespace follows the shard."""
    cfg = dict(is_mla_model=True, tp_size=2, dcp_size=2, logical_page_size=8)
    a = HiCacheLSM(make_config(tmp_path, tp_rank=0, dcp_rank=0, **cfg), {})
    b = HiCacheLSM(make_config(tmp_path, tp_rank=1, dcp_rank=1, **cfg), {})
    assert "tp" not in a.namespace_info
    assert a.namespace_info["dcp"] == [0, 2, 8]
    assert a._prefix_v1 != b._prefix_v1
    a.close()
    b.close()


# --------------------------------------------------------------------------- options


def test_options_come_from_extra_config(tmp_path):
    backend = HiCacheLSM(
        make_config(
            tmp_path,
            extra={
                "capacity_gb": 2,
                "durability": "batch",
                "read_threads": 2,
                "backend_name": "lsm",
                "module_path": "sglang_lsm.hicache",
                "class_name": "HiCacheLSM",
                "prefetch_threshold": 256,
            },
        ),
        {},
    )
    assert backend.engine_stats()["capacity_bytes"] == 2_000_000_000
    assert backend.store_path.startswith(str(tmp_path))
    backend.close()


def test_adaptive_controller_is_off_by_default_and_set_from_extra_config(tmp_path):
    default = HiCacheLSM(make_config(tmp_path / "default"), {})
    assert default.engine_stats()["controller"]["adaptive"] is False
    default.close()
    on = HiCacheLSM(make_config(tmp_path / "on", extra={"adaptive": True}), {})
    assert on.engine_stats()["controller"]["adaptive"] is True
    on.close()
    off = HiCacheLSM(
        make_config(tmp_path / "off", extra={"adaptive": False, "l0_threshold": 8}), {}
    )
    stats = off.engine_stats()
    assert stats["controller"]["adaptive"] is False
    assert stats["controller"]["knobs"]["l0_threshold"] == 8
    off.close()


@pytest.mark.parametrize(
    "extra, match",
    [
        ({"storage_dir": None}, "storage_dir"),
        ({"capacity_gb": -1}, "positive"),
        ({"capacity_gb": "lots"}, "number"),
        ({"capacity_bytes": 10}, "capacity_gb"),
        ({"namespace": 3}, "namespace"),
        ({"durabilty": "batch"}, "durabilty"),
        ({"read_threads": 0}, "read_threads"),
    ],
)
def test_bad_options_fail_at_startup(tmp_path, extra, match):
    with pytest.raises(InvalidArgumentError, match=match):
        HiCacheLSM(make_config(tmp_path, extra=extra), {})


def test_unsupported_pool_fails_at_registration(tmp_path):
    class NoZeroCopy(StandInMHAPool):
        def get_page_buffer_meta(self, indices):
            raise ValueError("Unsupported layout: page_unified")

    backend = HiCacheLSM(make_config(tmp_path), {})
    with pytest.raises(InvalidArgumentError, match="page_unified"):
        backend.register_mem_pool_host(NoZeroCopy("page_first"))
    # The failed registration already released the store's LOCK: SGLang's restart of the
    # rank, or a retry in this process, opens it.
    again = HiCacheLSM(make_config(tmp_path), {})
    again.close()
    backend.close()  # idempotent


def test_failed_start_releases_the_store_lock(tmp_path):
    """A metrics port already in use fails the start; the store it opened must be closed,
    so a second try in the same process opens it."""
    import socket

    from sglang_lsm import StoreError

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(StoreError, match="cannot serve metrics"):
            HiCacheLSM(make_config(tmp_path, extra={"metrics_port": port}), {})
        HiCacheLSM(make_config(tmp_path), {}).close()
    finally:
        taken.close()


# --------------------------------------------------------------------------- never raise


def test_v1_calls_report_false_instead_of_raising(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="sglang_lsm.hicache")
    pool = StandInMHAPool("page_first")
    backend = make_backend(tmp_path, pool)
    keys = keys_for("x", 2)
    # Host indices for 3 pages with 2 keys.
    assert backend.batch_set_v1(keys, page_indices([0, 1, 2], 4)) == [False, False]
    assert backend.batch_get_v1(keys, page_indices([0, 1, 2], 4)) == [False, False]
    # Wrongly sized host indices (not whole pages).
    assert backend.batch_set_v1(keys, torch.arange(6)) == [False, False]
    assert backend.batch_set_v1([], torch.arange(0)) == []
    # A key that is not a string.
    assert backend.batch_set_v1([None, "k"], page_indices([0, 1], 4)) == [False, False]
    assert "batch_set_v1" in caplog.text
    backend.close()
    # After close: still lists of False and 0, never an exception or None.
    assert backend.batch_set_v1(keys, page_indices([0, 1], 4)) == [False, False]
    assert backend.batch_get_v1(keys, page_indices([0, 1], 4)) == [False, False]
    assert backend.batch_exists(keys) == 0
    assert backend.exists(keys[0]) is False
    assert backend.batch_get(keys, [torch.zeros(4), torch.zeros(4)]) == [None, None]
    assert backend.batch_set(keys, [torch.zeros(4), torch.zeros(4)]) is False
    assert backend.clear() is False


def test_unregistered_pool_reports_false(tmp_path):
    backend = HiCacheLSM(make_config(tmp_path), {})
    assert backend.batch_set_v1(["a"], torch.arange(4)) == [False]
    backend.close()


# --------------------------------------------------------------------------- generic path


def test_generic_tensor_path(tmp_path):
    pool = StandInMHAPool("layer_first")
    backend = make_backend(tmp_path, pool, extra={"interface_v1": 0})
    gen = torch.Generator().manual_seed(3)
    values = [
        torch.randn(2, 3, 4, 2, 8, generator=gen).to(torch.bfloat16).flatten() for _ in range(3)
    ]
    keys = keys_for("g", 3)
    assert backend.batch_set(keys, values) is True
    assert backend.set("single", values[0]) is True
    assert backend.exists(keys[0]) and backend.exists("single")
    assert backend.batch_exists(keys + ["nope"]) == 3

    targets = [torch.zeros_like(v) for v in values] + [torch.zeros_like(values[0])]
    out = backend.batch_get(keys + ["nope"], targets)
    assert out[3] is None
    for got, target, want in zip(out[:3], targets, values):
        assert got is target and torch.equal(got, want)
    one = torch.zeros_like(values[1])
    assert backend.get(keys[1], one) is one and torch.equal(one, values[1])
    raw = backend.get(keys[2])
    assert raw.dtype == torch.uint8 and torch.equal(raw, values[2].view(torch.uint8))

    # Non-contiguous sources are copied; non-contiguous targets are refused (as a miss).
    strided = torch.randn(16, 4, generator=gen)[:, 0]
    assert backend.set("strided", strided) is True
    assert torch.equal(backend.get("strided", torch.zeros(16)), strided)
    assert backend.get("strided", torch.zeros(16, 2)[:, 0]) is None
    # Wrong target size is reported as a miss, not an exception.
    assert backend.get(keys[0], torch.zeros(3)) is None
    backend.close()


def test_generic_and_v1_pages_do_not_mix(tmp_path):
    """The two interfaces lay pages out differently, so they use different namespaces."""
    pool = StandInMHAPool("layer_first")
    v1 = make_backend(tmp_path, pool)
    keys = keys_for("i", 2)
    v1.batch_set_v1(keys, page_indices([0, 1], 4))
    v1.close()
    generic = make_backend(tmp_path, pool, extra={"interface_v1": 0})
    assert generic.batch_exists(keys) == 0
    generic.close()


# --------------------------------------------------------------------------- metrics, clear


def test_stats_and_clear(tmp_path):
    pool = StandInMHAPool("page_first")
    backend = make_backend(tmp_path, pool, enable_storage_metrics=True)
    keys = keys_for("s", 4)
    backend.batch_set_v1(keys, page_indices(range(4), 4))
    backend.batch_get_v1(keys, page_indices(range(4, 8), 4))
    stats = backend.get_stats()
    assert stats.backup_pgs == [4] and stats.prefetch_pgs == [4]
    assert len(stats.backup_bandwidth) == 1 and stats.backup_bandwidth[0] > 0
    assert len(stats.prefetch_bandwidth) == 1 and stats.prefetch_bandwidth[0] > 0
    # Drained on read.
    assert backend.get_stats().prefetch_pgs == []
    assert backend.clear() is True
    assert backend.batch_exists(keys) == 0
    backend.close()
    backend.close()


# --------------------------------------------------------------------------- threads


@pytest.mark.parametrize(
    "kind, layout", [("mha", "page_first"), ("mha", "layer_first"), ("mla", "page_first")]
)
def test_prefetch_and_backup_threads_at_once(tmp_path, kind, layout):
    """A backup thread writes while prefetch threads probe and read, as SGLang does."""
    pool = new_pool(kind, layout, size=4 * 256)
    backend = make_backend(tmp_path, pool)
    gen = torch.Generator().manual_seed(11)
    n_pages, batch = 96, 8
    # Pages 0..95 are the source; 128.. are read destinations, one block per reader.
    for p in range(n_pages):
        pool.fill_page(p * pool.page_size, gen)
    want = {p: pool.page_view(p * pool.page_size) for p in range(n_pages)}
    keys = keys_for("w", n_pages)
    errors: list[BaseException] = []
    written = threading.Semaphore(0)

    def backup():
        try:
            for lo in range(0, n_pages, batch):
                info = SimpleNamespace(prefix_keys=keys[:lo])
                res = backend.batch_set_v1(
                    keys[lo : lo + batch], page_indices(range(lo, lo + batch), pool.page_size), info
                )
                assert res == [True] * batch
                written.release()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def prefetch(reader: int):
        try:
            base = 128 + reader * batch
            for _ in range(n_pages // batch):
                written.acquire()
                written.release()
                hit = backend.batch_exists(keys)
                assert hit >= batch
                n = min(batch, hit)
                lo = hit - n
                dst = page_indices(range(base, base + n), pool.page_size)
                assert backend.batch_get_v1(keys[lo:hit], dst) == [True] * n
                for j in range(n):
                    assert torch.equal(pool.page_view((base + j) * pool.page_size), want[lo + j])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=backup)] + [
        threading.Thread(target=prefetch, args=(r,)) for r in range(3)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert backend.batch_exists(keys) == n_pages
    backend.close()


def test_standalone_class_without_sglang(tmp_path):
    """With sglang absent, HiCacheLSM is a plain class offering the same calls."""
    import subprocess
    import sys

    script = f"""
import sys
sys.modules["sglang"] = None  # makes `import sglang...` raise ImportError
sys.path.insert(0, {os.path.dirname(__file__)!r})
import torch
from sglang_lsm import hicache
from hostpool import StandInMHAPool, page_indices
assert not hicache.SGLANG_AVAILABLE
assert hicache.HiCacheLSM.__mro__[1:] == (hicache.HybridCalls, object)
backend = hicache.HiCacheLSM(None, {{"storage_dir": {str(tmp_path)!r}, "interface_v1": 1}})
pool = StandInMHAPool("layer_first")
pool.fill_page(0, torch.Generator().manual_seed(0))
want = pool.page_view(0)
backend.register_mem_pool_host(pool)
backend.on_host_pools_registered()
assert backend.batch_set_v1(["k"], page_indices([0], 4)) == [True]
assert backend.batch_exists(["k", "x"]) == 1
assert backend.batch_get_v1(["k"], page_indices([5], 4)) == [True]
assert torch.equal(pool.page_view(20), want)
stats = backend.get_stats()
assert type(stats).__name__ == "LSMStorageMetrics"
backend.close()
print("standalone ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "standalone ok" in out.stdout


def test_metrics_exporter_serves_prometheus_text(tmp_path):
    import urllib.error
    import urllib.request

    pool = StandInMHAPool("page_first")
    # Port 0 asks for an ephemeral port; the exporter binds to loopback.
    backend = make_backend(tmp_path, pool, extra={"metrics_port": 0})
    try:
        keys = keys_for("m", 3)
        assert backend.batch_set_v1(keys, page_indices(range(3), pool.page_size)) == [True] * 3
        port = backend.metrics_exporter.port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            body = r.read().decode()
            assert r.headers["Content-Type"].startswith("text/plain")
        assert "sglang_lsm_put_pages_total 3" in body
        assert "sglang_lsm_segment_live_fraction_count" in body
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    finally:
        backend.close()
    assert backend.metrics_exporter is None


def test_capacity_gb_bounds_the_store_by_reclaiming(tmp_path):
    """A store far smaller than what SGLang backs up keeps accepting pages (it evicts), stays
    within its bound, and what it still holds reads back exactly."""
    # 512 KiB pages: 64 tokens x (2 x 4 layers x 8 heads x 64 dim x 2 bytes).
    pool = StandInMHAPool("page_first", size=64 * 64, page_size=64, layer_num=4, head_num=8, head_dim=64)
    capacity_bytes = 32 * 2**20
    backend = make_backend(tmp_path, pool, extra={"capacity_gb": capacity_bytes / 1e9})
    gen = torch.Generator().manual_seed(7)
    try:
        written = 0
        last = None
        for round_ in range(32):
            pages = list(range((round_ % 8) * 8, (round_ % 8) * 8 + 8))
            for p in pages:
                pool.fill_page(p * pool.page_size, gen)
            keys = keys_for(f"r{round_:04d}-", 8)
            assert backend.batch_set_v1(keys, page_indices(pages, pool.page_size)) == [True] * 8
            written += 8 * 512 * 2**10
            last = (keys, [pool.page_view(p * pool.page_size) for p in pages])
        stats = backend.store.stats()
        assert written >= 4 * capacity_bytes
        assert stats["log_bytes"] <= capacity_bytes + 2 * 2**20, stats
        assert stats["evicted_pages"] > 0, stats
        # The newest pages are still there and exact.
        keys, want = last
        assert backend.batch_get_v1(keys, page_indices(range(56, 64), pool.page_size)) == [True] * 8
        for p, w in zip(range(56, 64), want):
            assert torch.equal(pool.page_view(p * pool.page_size), w)
    finally:
        backend.close()
