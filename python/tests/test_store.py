"""The plain Store API: real bytes through the compiled engine."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import sglang_lsm
from sglang_lsm import (
    InvalidArgumentError,
    LengthMismatchError,
    StoreClosedError,
    StoreError,
    StoreLockedError,
)


def rand_bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.fixture
def store(tmp_path):
    s = sglang_lsm.Store(tmp_path / "kv")
    yield s
    s.close()


def test_round_trip_of_every_buffer_kind(store):
    pages = {f"k{i}": rand_bytes(4096 + i * 517, i) for i in range(6)}
    values = [
        pages["k0"],
        bytearray(pages["k1"]),
        memoryview(pages["k2"]),
        np.frombuffer(pages["k3"], dtype=np.uint8).copy(),
        # Two parts concatenated (K then V).
        [pages["k4"][:1000], bytearray(pages["k4"][1000:])],
        # Non-uint8 arrays are stored as their raw bytes.
        np.frombuffer(pages["k5"][: len(pages["k5"]) // 4 * 4], dtype=np.float32).copy(),
    ]
    pages["k5"] = pages["k5"][: len(pages["k5"]) // 4 * 4]
    assert store.put_batch(list(pages), values) == [True] * 6

    bufs = [bytearray(len(v)) for v in pages.values()]
    assert store.get_batch(list(pages), bufs) == [True] * 6
    for buf, want in zip(bufs, pages.values()):
        assert bytes(buf) == want
    for key, want in pages.items():
        assert store.get(key) == want

    # Reading into several parts splits the page in order.
    k_part = np.zeros(1000, dtype=np.uint8)
    v_part = bytearray(len(pages["k4"]) - 1000)
    assert store.get_batch(["k4"], [[k_part, v_part]]) == [True]
    assert k_part.tobytes() + bytes(v_part) == pages["k4"]


def test_str_and_bytes_keys_are_the_same_key(store):
    assert store.put_batch(["ключ"], [b"unicode"]) == [True]
    assert store.get("ключ".encode("utf-8")) == b"unicode"
    assert store.exists(b"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87")


def test_misses_are_false_and_leave_hits_intact(store):
    store.put_batch(["a", "c"], [b"A" * 100, b"C" * 100])
    bufs = [bytearray(100) for _ in range(3)]
    assert store.get_batch(["a", "b", "c"], bufs) == [True, False, True]
    assert bytes(bufs[0]) == b"A" * 100 and bytes(bufs[2]) == b"C" * 100
    assert store.get("b") is None
    assert not store.exists("b")


def test_probe_counts_the_leading_run(store):
    keys = [f"p{i}" for i in range(10)]
    store.put_batch(keys[:4] + keys[5:], [rand_bytes(64, i) for i in range(9)])
    assert store.probe(keys) == 4
    assert store.probe(keys[5:]) == 5
    assert store.probe(["missing"] + keys) == 0
    assert store.probe([]) == 0
    # With the chain before the batch, the answer is the same.
    assert store.probe(keys[5:], prefix_keys=keys[:5]) == 5


def test_existing_key_is_kept_not_overwritten(store):
    assert store.put_batch(["k"], [b"first"]) == [True]
    assert store.put_batch(["k"], [b"second"]) == [True]
    assert store.get("k") == b"first"


def test_delete(store):
    store.put_batch(["k"], [b"v"])
    assert store.delete("k") is True
    assert store.delete("k") is False
    assert store.get("k") is None


def test_clear(store):
    store.put_batch(["a", "b"], [b"1", b"2"])
    store.clear()
    assert store.probe(["a", "b"]) == 0
    assert store.put_batch(["a"], [b"3"]) == [True]
    assert store.get("a") == b"3"


def test_pointer_api_round_trip(store):
    src = np.random.default_rng(7).integers(0, 256, (4, 2, 3000), dtype=np.uint8)
    ptrs = [[int(src[i, 0].ctypes.data), int(src[i, 1].ctypes.data)] for i in range(4)]
    sizes = [[3000, 3000]] * 4
    keys = [f"ptr{i}" for i in range(4)]
    assert store.put_batch_ptrs(keys, ptrs, sizes) == [True] * 4

    dst = np.zeros_like(src)
    spare = np.zeros(16, dtype=np.uint8)
    dptrs = [[int(dst[i, 0].ctypes.data), int(dst[i, 1].ctypes.data)] for i in range(4)]
    got = store.get_batch_ptrs(keys + ["nope"], dptrs + [[int(spare.ctypes.data)]], sizes + [[16]])
    assert got == [True, True, True, True, False]
    assert np.array_equal(src, dst)


def test_persists_across_reopen(tmp_path):
    path = tmp_path / "kv"
    page = rand_bytes(70_000, 3)
    with sglang_lsm.Store(path) as s:
        assert s.put_batch(["persist"], [page]) == [True]
    with sglang_lsm.Store(path) as s:
        assert s.get("persist") == page


def test_stats_is_a_dict_of_counters(store):
    store.put_batch(["a"], [b"x" * 10])
    store.get("a")
    stats = store.stats()
    assert isinstance(stats, dict)
    assert stats["put_pages"] == 1
    assert stats["get_hits"] == 1


# --------------------------------------------------------------------------- bad input


def test_length_mismatch_raises_and_store_stays_usable(store):
    store.put_batch(["k"], [b"x" * 10])
    with pytest.raises(LengthMismatchError) as info:
        store.get_batch(["k"], [bytearray(9)])
    assert info.value.code == "length_mismatch"
    assert isinstance(info.value, ValueError)
    assert store.get("k") == b"x" * 10


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s: s.put_batch([1], [b"x"]), "keys must be str or bytes"),
        (lambda s: s.put_batch(["a", "b"], [b"x"]), "2 keys but 1 values"),
        (lambda s: s.put_batch("ab", [b"x", b"y"]), "keys must be a list"),
        (lambda s: s.put_batch(["a"], b"x"), "values must be a list"),
        (lambda s: s.get_batch(["a"], bytearray(4)), "buffers must be a list"),
        (lambda s: s.probe(b"ab"), "keys must be a list"),
        (lambda s: s.put_batch(["a"], [object()]), "does not expose a buffer"),
        (lambda s: s.put_batch(["a"], [[]]), "no buffers"),
        (lambda s: s.put_batch(["a"], [b""]), "zero-length"),
        (lambda s: s.put_batch([""], [b"x"]), "empty key"),
        (lambda s: s.put_batch(["k" * 5000], [b"x"]), "exceeds"),
        (lambda s: s.get_batch(["a"], [b"immutable"]), "read-only"),
        (lambda s: s.get_batch(["a"], [np.zeros((4, 4), np.uint8)[:, 1]]), "not C-contiguous"),
        (lambda s: s.put_batch_ptrs(["a"], [[0]], [[8]]), "null pointer"),
        (lambda s: s.put_batch_ptrs(["a"], [[1, 2]], [[8]]), "2 pointers but 1 sizes"),
        (lambda s: s.put_batch_ptrs(["a"], [[1]], [[-1]]), "non-negative"),
        (lambda s: s.put_batch_ptrs(["a"], [[2**64 - 8]], [[64]]), "wraps"),
        (lambda s: s.put_batch_ptrs(["a"], [[1], [2]], [[1]]), "2 pages but sizes has 1"),
        (lambda s: s.put_batch_ptrs(["a"], "nope", [[1]]), "ptrs must be"),
    ],
)
def test_bad_input_raises_invalid_argument(store, call, match):
    with pytest.raises(InvalidArgumentError, match=match):
        call(store)
    # The store is unharmed.
    assert store.put_batch(["after"], [b"ok"]) == [True]


def test_overlapping_destinations_are_rejected(store):
    store.put_batch(["a", "b"], [b"1" * 8, b"2" * 8])
    dst = np.zeros(12, dtype=np.uint8)
    base = int(dst.ctypes.data)
    with pytest.raises(InvalidArgumentError, match="overlap"):
        store.get_batch_ptrs(["a", "b"], [[base], [base + 4]], [[8], [8]])
    buf = bytearray(8)
    with pytest.raises(InvalidArgumentError, match="overlap"):
        store.get_batch(["a", "b"], [buf, buf])


def test_adaptive_false_keeps_hand_set_knobs(tmp_path):
    with sglang_lsm.Store(
        tmp_path / "kv", adaptive=False, memtable_bytes=8 << 20, level_ratio=4
    ) as s:
        ctl = s.stats()["controller"]
        assert ctl["adaptive"] is False
        assert ctl["knobs"]["memtable_bytes"] == 8 << 20
        assert ctl["knobs"]["level_ratio"] == 4
    with pytest.raises(InvalidArgumentError, match="l0_threshold"):
        sglang_lsm.Store(tmp_path / "kv2", l0_threshold=1)


def test_s3fifo_eviction_is_an_option_with_checked_values(tmp_path):
    # 48 MiB of 1 MiB pages through a 32 MiB store: the reclaimer evicts, every hit is exact.
    pages = {f"p{i}": rand_bytes(1 << 20, i) for i in range(48)}
    with sglang_lsm.Store(tmp_path / "kv", capacity_bytes=32 << 20, eviction="s3fifo") as s:
        for key, page in pages.items():
            assert s.put_batch([key], [page]) == [True]
        stats = s.stats()
        assert stats["promoted_pages"] == 0 and stats["ghost_returned_pages"] == 0
        gone = [k for k in pages if not s.exists(k)]
        assert gone, "48 MiB through 32 MiB evicts"
        # Evicted from probation, then put again: the ghost remembers them.
        assert all(s.put_batch([k], [pages[k]]) == [True] for k in gone[:4])
        assert s.stats()["ghost_returned_pages"] == 4
        kept = [k for k in pages if s.get(k) is not None]
        assert 0 < len(kept) < len(pages)
        assert all(s.get(k) == pages[k] for k in kept)
        assert s.stats()["log_bytes"] <= (32 << 20) + (1 << 20)
    with pytest.raises(InvalidArgumentError, match="eviction"):
        sglang_lsm.Store(tmp_path / "kv2", eviction="lru")
    with pytest.raises(InvalidArgumentError, match="probation_fraction"):
        sglang_lsm.Store(tmp_path / "kv3", eviction="s3fifo", probation_fraction=0.0)


def test_unknown_option_is_rejected(tmp_path):
    with pytest.raises(InvalidArgumentError, match="capacity_gigs"):
        sglang_lsm.Store(tmp_path / "kv", capacity_gigs=1)
    with pytest.raises(InvalidArgumentError, match="JSON"):
        sglang_lsm.Store(tmp_path / "kv", durability=object())


def test_second_open_is_locked(store):
    with pytest.raises(StoreLockedError) as info:
        sglang_lsm.Store(store.path)
    assert isinstance(info.value, OSError)


def test_closed_store_raises(tmp_path):
    s = sglang_lsm.Store(tmp_path / "kv")
    s.close()
    s.close()  # idempotent
    assert s.closed
    with pytest.raises(StoreClosedError):
        s.get("a")
    with pytest.raises(StoreError):
        s.put_batch(["a"], [b"x"])
    # The directory is free again.
    sglang_lsm.Store(tmp_path / "kv").close()


def test_capacity_bound_evicts_instead_of_failing(tmp_path):
    """A 16 MiB store given 64 MiB of pages keeps accepting them (it reclaims older ones),
    stays within its bound, and declines only a batch that could never fit."""
    page = rand_bytes(256 * 1024, 1)
    with sglang_lsm.Store(tmp_path / "kv", capacity_bytes=16 << 20) as s:
        for i in range(256):
            assert s.put_batch([f"c{i}"], [page]) == [True]
        st = s.stats()
        assert st["log_bytes"] <= (16 << 20) + (1 << 20)
        assert st["evicted_pages"] > 0
        assert s.get("c255") == page
        for i in range(256):
            data = s.get(f"c{i}")
            assert data is None or data == page
        # One batch bigger than the whole store: the part that fits is stored, the rest is
        # declined (a suffix), never an exception.
        big = s.put_batch([f"big{i}" for i in range(80)], [page] * 80)
        assert big[0] is True and big[-1] is False
        first_false = big.index(False)
        assert all(r is False for r in big[first_false:])


def test_namespace_quota_through_options(tmp_path):
    """namespace_quotas and namespace_separator reach the engine as options: a tenant that
    writes past its quota evicts its own oldest pages, never another tenant's, and the stats
    show it. A bad quota is an InvalidArgumentError naming the option."""
    page = rand_bytes(256 * 1024, 2)
    quotas = {"a": 1 << 20, "b": 4 << 20}
    with sglang_lsm.Store(tmp_path / "kv", namespace_quotas=quotas, namespace_separator=":") as s:
        assert s.put_batch([f"b:{i}" for i in range(4)], [page] * 4) == [True] * 4
        for i in range(12):
            assert s.put_batch([f"a:{i}"], [page]) == [True]
        st = {n["namespace"]: n for n in s.stats()["namespaces"]}
        assert st["a"]["quota_bytes"] == 1 << 20
        assert st["a"]["live_bytes"] <= 1 << 20
        assert st["a"]["pages"] == 4 and st["a"]["evicted_pages"] == 8
        assert st["b"]["pages"] == 4 and st["b"]["evicted_pages"] == 0
        assert s.get("a:0") is None and s.get("a:11") == page
        assert all(s.get(f"b:{i}") == page for i in range(4))
    with pytest.raises(InvalidArgumentError, match="namespace_quotas"):
        sglang_lsm.Store(tmp_path / "bad", namespace_quotas={"a": 1000})


# --------------------------------------------------------------------------- threads


def test_concurrent_put_get_probe(tmp_path):
    """Several threads write, read and probe at once; every byte read is the byte written."""
    errors: list[BaseException] = []
    with sglang_lsm.Store(tmp_path / "kv") as s:

        def page(t: int, i: int) -> bytes:
            return bytes([(t * 31 + i) % 256]) * (8192 + t)

        def worker(t: int) -> None:
            try:
                keys = [f"t{t}-{i}" for i in range(64)]
                for lo in range(0, 64, 8):
                    batch = keys[lo : lo + 8]
                    assert s.put_batch(batch, [page(t, lo + j) for j in range(8)]) == [True] * 8
                    assert s.probe(keys[: lo + 8]) == lo + 8
                    bufs = [bytearray(8192 + t) for _ in batch]
                    assert s.get_batch(batch, bufs) == [True] * 8
                    for j, buf in enumerate(bufs):
                        assert bytes(buf) == page(t, lo + j)
                    assert s.exists(batch[-1])
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        assert s.stats()["pages"] == 8 * 64


def test_close_waits_for_calls_on_other_threads(tmp_path):
    s = sglang_lsm.Store(tmp_path / "kv")
    keys = [f"k{i}" for i in range(200)]
    s.put_batch(keys, [os.urandom(64 * 1024) for _ in keys])
    stop = threading.Event()
    outcomes: list[str] = []

    def reader() -> None:
        bufs = [bytearray(64 * 1024) for _ in keys]
        while not stop.is_set():
            try:
                s.get_batch(keys, bufs)
            except StoreClosedError:
                outcomes.append("closed")
                return
        outcomes.append("stopped")

    th = threading.Thread(target=reader)
    th.start()
    s.close()
    stop.set()
    th.join()
    assert outcomes in (["closed"], ["stopped"])
    # close() returned only after the reader let go, so the directory can be reopened now.
    sglang_lsm.Store(tmp_path / "kv").close()


def test_follower_reads_a_store_another_handle_writes(tmp_path):
    path = tmp_path / "writer"
    with pytest.raises(InvalidArgumentError, match="refresh_interval_ms"):
        sglang_lsm.Follower(path, refresh_interval_ms=-1)
    follower = sglang_lsm.Follower(path, refresh_interval_ms=0)  # before the writer exists
    assert follower.probe(["a"]) == 0
    with sglang_lsm.Store(path) as store:
        pages = [bytes([i]) * 5000 for i in range(3)]
        assert store.put_batch(["a", "b", "c"], pages) == [True] * 3
        assert follower.probe(["a", "b", "c", "d"]) == 3
        out = [bytearray(5000) for _ in range(3)]
        assert follower.get_batch(["a", "b", "c"], out) == [True] * 3
        assert [bytes(o) for o in out] == pages
        assert follower.get("b") == pages[1]
        store.delete("c")
        assert not follower.exists("c")
    stats = follower.stats()
    assert stats["pages"] == 2 and stats["get_hits"] >= 4
    assert "sglang_lsm_follower_pages 2" in follower.metrics_text()
    follower.close()
    with pytest.raises(StoreClosedError):
        follower.probe(["a"])


def test_parent_keys_hang_pages_under_their_parents(store):
    """``parent_keys``: each page a child of its own parent, stored before it or after."""
    states = [b"s0", b"s1", b"s2"]
    kv = [b"k0", b"k1", b"k2"]
    assert store.put_batch(states, [b"x" * 64] * 3, parent_keys=kv) == [True] * 3
    assert store.put_batch(kv, [b"y" * 64] * 3) == [True] * 3
    assert store.exists_batch([*kv, b"nope", *states]) == [True] * 3 + [False] + [True] * 3
    assert store.delete(b"k1")  # cascades to k2 and to the states of k1 and k2
    assert store.exists_batch([*kv, *states]) == [True, False, False, True, False, False]
    with pytest.raises(InvalidArgumentError, match="not both"):
        store.put_batch([b"a"], [b"z"], prefix_keys=[b"p"], parent_keys=[b"q"])
    with pytest.raises(InvalidArgumentError, match="parent keys"):
        store.put_batch([b"a", b"b"], [b"z", b"z"], parent_keys=[b"q"])
