"""The node service (``sglang-lsm serve``) as separate processes: clients, SGLang ranks and
replicas in their own interpreters, kills with SIGKILL and SIGSTOP, bad peers.

Every test runs the real binary (see ``service_util``). Each checks page bytes, not counts:
a key that reads back must read back exactly what was written under it.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import re
import signal
import socket as socketlib
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from sglang_lsm import (
    Client,
    InvalidArgumentError,
    LengthMismatchError,
    ServiceRefusedError,
    ServiceUnavailableError,
    Store,
    StoreClosedError,
    StoreError,
)
from service_util import (
    Service,
    child_stderr,
    drain_lines,
    metric,
    page_bytes,
    python_child,
    read_line,
    remove_dir,
    socket_dir,
    wait_until,
)


@pytest.fixture
def sockdir():
    d = socket_dir()
    yield d
    remove_dir(d)


@pytest.fixture
def serve(tmp_path, sockdir):
    """Starts ``sglang-lsm serve`` with extra arguments; every service is killed at teardown."""
    started: list[Service] = []

    def start(*args: str, name: str = "svc") -> Service:
        svc = Service(tmp_path / f"{name}-store", sockdir / f"{name}.sock", *args, log_dir=tmp_path)
        started.append(svc)
        return svc.start()

    yield start
    for svc in started:
        svc.kill()


@pytest.fixture
def children():
    """Child processes a test starts; whatever is left is killed at teardown (a SIGSTOPped
    one is continued first so it can die)."""
    procs: list = []
    yield procs
    for p in procs:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            p.kill()
        p.wait(timeout=30)


# --------------------------------------------------------------------------- 1. Client = Store


def outcome(call):
    """A call's result, or its error's class and code, so two implementations compare."""
    try:
        return ("ok", call())
    except StoreError as e:
        return ("error", type(e).__name__, e.code)


def test_client_matches_store_for_every_call(tmp_path, serve):
    # 1 MiB arenas: the 40 x 100 KiB batch below must be split into several service calls.
    svc = serve("--arena-mib", "2")
    client = Client(svc.socket, timeout_ms=5000)
    store = Store(tmp_path / "embedded")
    both = (store, client)

    def same(call, want=None):
        got = [outcome(lambda: call(s)) for s in both]
        assert got[0] == got[1], f"Store gave {got[0]}, Client gave {got[1]}"
        if want is not None:
            assert got[0] == want, got[0]
        return got[0]

    pages = {f"k{i}": page_bytes(f"k{i}", 4096 + 517 * i) for i in range(6)}
    pages["ключ"] = page_bytes("ключ", 3000)
    values = [
        pages["k0"],
        bytearray(pages["k1"]),
        memoryview(pages["k2"]),
        np.frombuffer(pages["k3"], dtype=np.uint8).copy(),
        [pages["k4"][:1000], bytearray(pages["k4"][1000:])],  # K and V halves
        pages["k5"],
        pages["ключ"],
    ]
    keys = list(pages)
    same(lambda s: s.put_batch(keys[:4], values[:4]), ("ok", [True] * 4))
    same(lambda s: s.put_batch(keys[4:], values[4:], prefix_keys=keys[:4]), ("ok", [True] * 3))
    # A key stored already is a success that leaves the stored page alone.
    same(lambda s: s.put_batch(["k0"], [b"other bytes"]), ("ok", [True]))

    def read_all(s):
        bufs = [bytearray(len(v)) for v in pages.values()]
        bufs[4] = [bytearray(1000), np.zeros(len(pages["k4"]) - 1000, dtype=np.uint8)]
        hits = s.get_batch(keys + ["absent"], bufs + [bytearray(10)])
        flat = [bytes(b) if not isinstance(b, list) else bytes(b[0]) + b[1].tobytes() for b in bufs]
        return hits, flat

    hits, flat = same(read_all)[1]
    assert hits == [True] * 7 + [False]
    assert flat == list(pages.values()), "every page byte for byte"
    for k, v in pages.items():
        same(lambda s: s.get(k), ("ok", v))
    same(lambda s: s.get("ключ".encode()), ("ok", pages["ключ"]))
    same(lambda s: s.get("absent"), ("ok", None))
    same(lambda s: s.probe(keys + ["absent", "k0"]), ("ok", 7))
    same(lambda s: s.probe(keys[4:], prefix_keys=keys[:4]), ("ok", 3))
    same(lambda s: s.probe(["absent"] + keys), ("ok", 0))
    same(lambda s: s.exists("k3"), ("ok", True))
    same(lambda s: s.delete("k5"), ("ok", True))
    same(lambda s: s.delete("k5"), ("ok", False))
    same(lambda s: s.exists("k5"), ("ok", False))
    same(lambda s: s.get("k5"), ("ok", None))
    # "ключ" was put behind k5 in one chain; it goes with its parent.
    same(lambda s: s.exists("ключ"), ("ok", False))
    same(lambda s: s.exists("k4"), ("ok", True))

    # Raw pointers: ctypes buffers (and torch tensors when torch is here).
    src = [ctypes.create_string_buffer(page_bytes(f"p{i}", 8192), 8192) for i in range(3)]
    ptr_keys = ["p0", "p1", "p2"]
    same(
        lambda s: s.put_batch_ptrs(
            ptr_keys,
            [[ctypes.addressof(b)] for b in src[:2]]
            + [[ctypes.addressof(src[2]), ctypes.addressof(src[2]) + 4096]],
            [[8192], [8192], [4096, 4096]],
        ),
        ("ok", [True] * 3),
    )

    def read_ptrs(s):
        dst = [ctypes.create_string_buffer(8192) for _ in range(4)]
        hits = s.get_batch_ptrs(
            ptr_keys + ["absent"],
            [[ctypes.addressof(d)] for d in dst[:2]]
            + [[ctypes.addressof(dst[2]), ctypes.addressof(dst[2]) + 5000]]
            + [[ctypes.addressof(dst[3])]],
            [[8192], [8192], [5000, 3192], [8192]],
        )
        return hits, [d.raw for d in dst[:3]]

    hits, raw = same(read_ptrs)[1]
    assert hits == [True, True, True, False]
    assert raw == [page_bytes(k, 8192) for k in ptr_keys]

    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        t_src = torch.from_numpy(np.frombuffer(page_bytes("t", 3 * 4096), dtype=np.uint8).copy())
        same(
            lambda s: s.put_batch_ptrs(["t"], [[t_src.data_ptr()]], [[t_src.numel()]]),
            ("ok", [True]),
        )

        def read_tensor(s):
            t_dst = torch.zeros(3 * 4096, dtype=torch.uint8)
            hits = s.get_batch_ptrs(["t"], [[t_dst.data_ptr()]], [[t_dst.numel()]])
            return hits, t_dst.numpy().tobytes()

        assert same(read_tensor)[1] == ([True], page_bytes("t", 3 * 4096))

    # Typed errors, the same class and code from both.
    mismatch = ("error", "LengthMismatchError", "length_mismatch")
    same(lambda s: s.get_batch(["k0"], [bytearray(100)]), mismatch)
    same(lambda s: s.get_batch_ptrs(["k0"], [[ctypes.addressof(src[0])]], [[100]]), mismatch)
    bad = ("error", "InvalidArgumentError", "invalid_argument")
    same(lambda s: s.put_batch_ptrs(["bad"], [[1]], [[4096]]), bad)
    same(lambda s: s.get_batch_ptrs(["k0"], [[1]], [[len(pages["k0"])]]), bad)
    same(lambda s: s.exists("bad"), ("ok", False))  # the refused put stored nothing
    long_key = "x" * 1025
    too_long = ("error", "InvalidArgumentError", "key_too_long")
    same(lambda s: s.put_batch([long_key], [b"v"]), too_long)
    same(lambda s: s.exists(long_key), too_long)
    same(lambda s: s.get(long_key), too_long)
    same(lambda s: s.probe([long_key]), too_long)
    same(lambda s: s.put_batch([""], [b"v"]), ("error", "InvalidArgumentError", "empty_key"))
    same(lambda s: s.put_batch(["e"], [b""]), ("error", "InvalidArgumentError", "empty_value"))
    same(lambda s: s.put_batch(["a", "b"], [b"v"]), bad)
    same(lambda s: s.get_batch(["a", "b"], [bytearray(1)]), bad)
    with pytest.raises(LengthMismatchError):
        client.get_batch(["k1"], [bytearray(1)])
    with pytest.raises(InvalidArgumentError):
        client.put_batch_ptrs(["bad"], [[1]], [[4096]])

    # One call bigger than the arena: 40 pages of 100 KiB (~4 MiB) through a 2 MiB arena (1 MiB halves).
    big_keys = [f"big-{i}" for i in range(40)]
    big = [page_bytes(k, 100 << 10) for k in big_keys]
    same(lambda s: s.put_batch(big_keys, big), ("ok", [True] * 40))

    def read_big(s):
        bufs = [bytearray(100 << 10) for _ in big_keys]
        return s.get_batch(big_keys, bufs), [bytes(b) for b in bufs]

    hits, got = same(read_big)[1]
    assert hits == [True] * 40 and got == big
    block = ctypes.create_string_buffer(40 * (100 << 10))
    base = ctypes.addressof(block)
    assert client.get_batch_ptrs(
        big_keys, [[base + i * (100 << 10)] for i in range(40)], [[100 << 10]] * 40
    ) == [True] * 40
    assert block.raw == b"".join(big)
    same(lambda s: s.probe(big_keys), ("ok", 40))
    same(lambda s: s.probe(big_keys[20:], prefix_keys=big_keys[:20]), ("ok", 20))
    # One page larger than half the arena cannot go through it; the message says what to change.
    with pytest.raises(InvalidArgumentError, match="--arena-mib"):
        client.put_batch(["huge"], [bytes((1 << 20) + 1)])
    assert not client.exists("huge")

    s_stats, c_stats = store.stats(), client.stats()
    for field in ("pages", "live_bytes", "put_pages", "put_bytes", "put_existing_pages", "deletes"):
        assert s_stats[field] == c_stats[field], (field, s_stats[field], c_stats[field])
    # k0-k4 (k5 and its descendant gone), p0-p2, t, big-*.
    assert c_stats["pages"] == 5 + 3 + (1 if torch is not None else 0) + 40, c_stats["pages"]
    assert "sglang_lsm_" in store.metrics_text()
    text = client.metrics_text()
    assert "sglang_lsm_" in text and metric(text, "sglang_lsm_service_requests_total") > 0
    same(lambda s: s.flush(), ("ok", None))
    same(lambda s: s.clear(), ("ok", None))
    same(lambda s: s.probe(keys + big_keys), ("ok", 0))
    same(lambda s: s.stats()["pages"], ("ok", 0))

    for s in both:
        s.close()
        s.close()  # idempotent
    same(lambda s: s.exists("k0"), ("error", "StoreClosedError", "closed"))
    with pytest.raises(StoreClosedError):
        client.connect()
    assert client.closed and "closed" in repr(client)
    # Closing a client leaves the service's store open for everyone else.
    other = Client(svc.socket)
    assert other.put_batch(["after"], [b"still served"]) == [True]
    assert other.get("after") == b"still served"


def test_client_arguments_are_checked_before_connecting(sockdir):
    with pytest.raises(ServiceUnavailableError, match="sglang-lsm serve"):
        Client(sockdir / "nobody.sock", timeout_ms=1000)
    lazy = Client(sockdir / "nobody.sock", timeout_ms=1000, connect=False)
    with pytest.raises(ServiceUnavailableError):
        lazy.exists("k")
    for bad in (
        {"timeout_ms": 0},
        {"timeout_ms": True},
        {"max_connections": 0},
        {"max_connections": 65},
    ):
        with pytest.raises(InvalidArgumentError):
            Client(sockdir / "nobody.sock", connect=False, **bad)


# --------------------------------------------------------------- 2-3. SGLang ranks and replicas

# One SGLang rank: a HiCacheStorage built by SGLang's own StorageBackendFactory from the
# dynamic config, on a host pool (SGLang's real one when it builds here), driven over stdin
# with one JSON command per line and one JSON reply per line.
RANK_CHILD = r"""
import hashlib, json, sys
from pathlib import Path

import torch
import test_sglang_real as real
from hostpool import page_indices
from sglang.srt.mem_cache.hicache_storage import HiCacheStorage, HiCacheStorageExtraInfo
from sglang.srt.mem_cache.storage.backend_factory import StorageBackendFactory
from sglang_lsm.hicache import HiCacheLSM

spec = json.loads(sys.argv[1])
pool, is_real = real.build_pool(spec["kind"], spec["layout"])
cfg = real.storage_config(Path(spec["tmp"]), spec["kind"], spec["layout"])
# With "server" the store's options belong to the service, not to extra_config.
del cfg.extra_config["storage_dir"], cfg.extra_config["capacity_gb"]
cfg.extra_config.update(server=spec["socket"], server_timeout_ms=5000)
cfg.tp_rank, cfg.tp_size, cfg.dp_rank = spec["tp_rank"], spec["tp_size"], spec["dp_rank"]
backend = StorageBackendFactory.create_backend("dynamic", cfg, pool)
assert isinstance(backend, HiCacheStorage) and isinstance(backend, HiCacheLSM), type(backend)
backend.register_mem_pool_host(pool)
backend.on_host_pools_registered()
P = real.PAGE


def digest(p):
    data = real.flat_page(pool, p * P).view(torch.uint8).numpy().tobytes()
    return hashlib.sha256(data).hexdigest()


def reply(**kw):
    print(json.dumps(kw), flush=True)


reply(prefix=backend._prefix_v1, real=is_real)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "exit":
        backend.close()
        reply(closed=True)
        break
    n = len(cmd["pages"])
    tokens = list(range(cmd["token0"], cmd["token0"] + n * P))
    keys = real.page_keys(tokens, P, prior=cmd.get("prior"))
    info = HiCacheStorageExtraInfo(prefix_keys=cmd.get("prefix_keys"))
    where = page_indices(cmd["pages"], P)
    if cmd["op"] == "write":
        real.fill_random(pool, cmd["seed"])
        ok = backend.batch_set_v1(keys, where, info)
        reply(keys=keys, ok=ok, digests=[digest(p) for p in cmd["pages"]])
    elif cmd["op"] == "read":
        # The writer's bytes rebuilt from its seed: every process fills a pool the same way.
        ref, _ = real.build_pool(spec["kind"], spec["layout"])
        real.fill_random(ref, cmd["seed"])
        want = [real.flat_page(ref, p * P) for p in cmd["src"]]
        pool.kv_buffer.zero_()
        hits = backend.batch_exists(keys, info)
        got = backend.batch_get_v1(keys, where, info)
        equal = [
            bool(torch.equal(real.flat_page(pool, p * P), w)) for p, w in zip(cmd["pages"], want)
        ]
        digests = [digest(p) for p in cmd["pages"]]
        reply(keys=keys, exists=hits, got=got, equal=equal, digests=digests)
"""

RANK_START_S = 240  # importing sglang takes 10-20 s per process on a busy 2-core machine


def start_rank(children, tmp_path, socket, tp_rank=0, tp_size=1, dp_rank=0):
    spec = dict(
        kind="mha",
        layout="page_first",
        tmp=str(tmp_path),
        socket=str(socket),
        tp_rank=tp_rank,
        tp_size=tp_size,
        dp_rank=dp_rank,
    )
    proc = python_child(RANK_CHILD, json.dumps(spec))
    children.append(proc)
    return proc


def ask(proc, timeout_s=60, **cmd):
    proc.stdin.write(json.dumps(cmd) + "\n")
    proc.stdin.flush()
    return json.loads(read_line(proc, timeout_s, f"rank command {cmd['op']}"))


def need_sglang():
    pytest.importorskip("torch")
    pytest.importorskip(
        "sglang.srt.mem_cache.hicache_storage",
        reason="sglang 0.5.23 is not importable; scripts/setup_sglang_venv.sh builds a venv "
        "with it",
    )


def test_two_dp_replicas_share_prefixes_through_one_service(tmp_path, serve, children):
    """Two processes, each with SGLang's own HiCacheStorage (dp_rank 0 and 1 of one model):
    what one backs up, the other finds and loads with exact bytes, both ways."""
    need_sglang()
    svc = serve()
    a = start_rank(children, tmp_path, svc.socket, dp_rank=0)
    b = start_rank(children, tmp_path, svc.socket, dp_rank=1)
    hello_a = json.loads(read_line(a, RANK_START_S, "replica A start"))
    hello_b = json.loads(read_line(b, RANK_START_S, "replica B start"))
    # DP replicas hold identical pages: one namespace, so prefixes are shared.
    assert hello_a["prefix"] == hello_b["prefix"]

    token0 = 1000
    src1, src2 = [5, 6, 7, 20], [21, 22, 30, 31]
    before = ask(b, op="read", token0=token0, pages=[50, 12, 49, 1], src=src1, seed=7)
    assert before["exists"] == 0 and before["got"] == [False] * 4, "nothing shared yet"

    # A backs up one sequence in two batches, as SGLang's backup thread does.
    w1 = ask(a, op="write", token0=token0, pages=src1, seed=7)
    w2 = ask(
        a, op="write", token0=token0 + 4 * 4, pages=src2, seed=7,
        prior=w1["keys"][-1], prefix_keys=w1["keys"],
    )
    assert w1["ok"] + w2["ok"] == [True] * 8
    a_keys, a_digests = w1["keys"] + w2["keys"], w1["digests"] + w2["digests"]

    dst = [50, 12, 49, 1, 2, 3, 60, 59]
    r = ask(b, op="read", token0=token0, pages=dst, src=src1 + src2, seed=7)
    assert r["keys"] == a_keys
    assert r["exists"] == 8
    assert r["got"] == [True] * 8
    assert r["equal"] == [True] * 8
    assert r["digests"] == a_digests, "B loaded exactly the bytes A backed up"

    # B extends the shared prefix; A then finds B's pages behind its own.
    w3 = ask(
        b, op="write", token0=token0 + 8 * 4, pages=[40, 41, 42], seed=9,
        prior=a_keys[-1], prefix_keys=a_keys,
    )
    assert w3["ok"] == [True] * 3
    r = ask(
        a, op="read", token0=token0 + 8 * 4, pages=[10, 11, 12], src=[40, 41, 42], seed=9,
        prior=a_keys[-1], prefix_keys=a_keys,
    )
    assert (r["exists"], r["got"], r["equal"]) == (3, [True] * 3, [True] * 3)
    assert r["digests"] == w3["digests"]
    whole = ask(a, op="read", token0=token0, pages=list(range(45, 56)), src=[0] * 11, seed=7)
    assert whole["exists"] == 11, "the whole chain, written by two processes, is one prefix"

    # Keys keep their namespace digest in the shared store.
    seen = Client(svc.socket)
    prefix = hello_a["prefix"]
    assert all(seen.exists(prefix + k) for k in a_keys + w3["keys"])
    assert not any(seen.exists(k) for k in a_keys)
    assert seen.stats()["pages"] == 11
    for p in (a, b):
        assert ask(p, op="exit")["closed"]
        assert p.wait(timeout=30) == 0, child_stderr(p)


def test_tp2_ranks_share_one_service_in_their_own_namespaces(tmp_path, sockdir, serve, children):
    """tp_rank 0 and 1 of tp_size 2 as two processes: the same SGLang page keys hold each
    rank's own shard, and the service's stats count both namespaces."""
    need_sglang()
    socket = sockdir / "tp.sock"  # where serve(name="tp") will listen
    # SGLang may come up before the service: the ranks start first and miss until it is up.
    ranks = [start_rank(children, tmp_path, socket, tp_rank=r, tp_size=2) for r in (0, 1)]
    prefixes = [
        json.loads(read_line(p, RANK_START_S, f"rank {i} start"))["prefix"]
        for i, p in enumerate(ranks)
    ]
    assert prefixes[0] != prefixes[1], "TP ranks hold different shards: different namespaces"
    down = ask(ranks[0], op="read", token0=2000, pages=[1, 2], src=[1, 2], seed=100)
    assert down["exists"] == 0 and down["got"] == [False, False]

    # A quota per rank namespace makes the service account for each one in its stats.
    config = tmp_path / "tp-config.json"
    config.write_text(json.dumps({"namespace_quotas": {p.rstrip(":"): 1 << 30 for p in prefixes}}))
    svc = serve("--config", str(config), name="tp")
    assert svc.socket == socket
    pages = [1, 2, 3, 4, 5, 6]
    writes = [
        ask(p, op="write", token0=2000, pages=pages, seed=100 + r) for r, p in enumerate(ranks)
    ]
    assert [w["ok"] for w in writes] == [[True] * 6] * 2
    assert writes[0]["keys"] == writes[1]["keys"], "the same SGLang keys on both ranks"
    assert writes[0]["digests"] != writes[1]["digests"]
    for r, p in enumerate(ranks):
        dst = [40, 41, 42, 43, 44, 45]
        back = ask(p, op="read", token0=2000, pages=dst, src=pages, seed=100 + r)
        assert back["exists"] == 6 and back["got"] == [True] * 6
        assert back["equal"] == [True] * 6, f"rank {r} read its own shard"
        assert back["digests"] == writes[r]["digests"]

    client = Client(socket)
    stats = client.stats()
    assert stats["pages"] == 12
    by_ns = {n["namespace"]: n for n in stats["namespaces"]}
    page_bytes_each = None
    for p in prefixes:
        ns = by_ns[p.rstrip(":")]
        assert ns["pages"] == 6, ns
        page_bytes_each = page_bytes_each or ns["live_bytes"]
        assert ns["live_bytes"] == page_bytes_each > 0
    for k in writes[0]["keys"]:
        v0, v1 = client.get(prefixes[0] + k), client.get(prefixes[1] + k)
        assert v0 is not None and v1 is not None and v0 != v1
    for p in ranks:
        assert ask(p, op="exit")["closed"]
        assert p.wait(timeout=30) == 0, child_stderr(p)


def test_server_option_refuses_store_options(sockdir):
    hicache = pytest.importorskip("sglang_lsm.hicache")
    with pytest.raises(InvalidArgumentError, match="capacity_gb"):
        hicache.HiCacheLSM(None, {"server": str(sockdir / "x.sock"), "capacity_gb": 1})
    with pytest.raises(InvalidArgumentError, match="storage_dir"):
        hicache.HiCacheLSM(None, {"server": str(sockdir / "x.sock"), "storage_dir": "/x"})


def test_one_instance_cannot_clear_the_whole_nodes_store(serve):
    hicache = pytest.importorskip("sglang_lsm.hicache")
    svc = serve()
    other = Client(svc.socket)
    assert other.put_batch(["another-model-page"], [b"theirs"]) == [True]
    backend = hicache.HiCacheLSM(None, {"server": str(svc.socket)})
    assert backend.clear() is False
    assert other.get("another-model-page") == b"theirs"
    backend.close()


# ------------------------------------------------------------------ 4. the service is killed


def test_service_killed_rounds_cost_misses_not_hangs_and_lose_nothing_acknowledged(serve):
    torch = pytest.importorskip("torch")
    from hostpool import StandInMHAPool, page_indices

    from sglang_lsm.hicache import HiCacheLSM

    svc = serve()
    timeout_ms = 2000
    client = Client(svc.socket, timeout_ms=timeout_ms)
    page = 4
    pool = StandInMHAPool("page_first", size=256, page_size=page)
    backend = HiCacheLSM(
        None, {"server": str(svc.socket), "server_timeout_ms": timeout_ms, "interface_v1": 1}
    )
    backend.register_mem_pool_host(pool)
    gen = torch.Generator().manual_seed(1)
    acked: dict[str, bytes] = {}  # through the Client
    backed: dict[str, bytes] = {}  # through HiCacheLSM, in the pool's part order
    slack_s = 1.0

    def timed(call):
        started = time.monotonic()
        result = call()  # v1 calls never raise: an exception fails the test here
        return result, time.monotonic() - started

    for rnd in range(3):
        keys = [f"round{rnd}-{i}" for i in range(8)]
        values = [page_bytes(k, (32 << 10) + 1000 * i) for i, k in enumerate(keys)]
        ok = client.put_batch(keys, values)
        assert ok == [True] * 8
        acked.update({k: v for k, v, f in zip(keys, values, ok) if f})
        src = [8 * rnd + i for i in range(4)]
        for p in src:
            pool.fill_page(p * page, gen)
        bkeys = [f"{rnd:02d}{i:062x}" for i in range(4)]
        assert backend.batch_set_v1(bkeys, page_indices(src, page)) == [True] * 4
        backed.update({k: pool.part_order_bytes(p * page) for k, p in zip(bkeys, src)})

        svc.kill()
        every = list(backed)
        scratch = page_indices(range(40, 40 + len(every)), page)
        n, took = timed(lambda: backend.batch_exists(every))
        assert n == 0 and took < timeout_ms / 1000 + slack_s, took
        got, took = timed(lambda: backend.batch_get_v1(every, scratch))
        assert got == [False] * len(every) and took < timeout_ms / 1000 + slack_s, took
        put, took = timed(lambda: backend.batch_set_v1(["down" * 16], page_indices([60], page)))
        assert put == [False] and took < timeout_ms / 1000 + slack_s, took
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError):
            client.get(keys[0])
        assert time.monotonic() - started < timeout_ms / 1000 + slack_s

        svc.start()
        # The same objects reconnect by themselves; every acknowledged page of every round
        # is back, byte for byte.
        bufs = [bytearray(len(v)) for v in acked.values()]
        assert client.get_batch(list(acked), bufs) == [True] * len(acked)
        assert [bytes(b) for b in bufs] == list(acked.values())
        assert backend.batch_exists(every) == len(every)
        dst = list(range(40, 40 + len(every)))
        assert backend.batch_get_v1(every, page_indices(dst, page)) == [True] * len(every)
        for k, p in zip(every, dst):
            assert pool.part_order_bytes(p * page) == backed[k], (rnd, k)
        assert backend.batch_exists(["down" * 16]) == 0, "a put refused while down stored nothing"
    assert client.stats()["pages"] == len(acked) + len(backed)
    backend.close()


def test_a_stopped_service_times_out_instead_of_hanging(serve):
    hicache = pytest.importorskip("sglang_lsm.hicache")
    svc = serve()
    timeout_ms = 1000
    client = Client(svc.socket, timeout_ms=timeout_ms)
    backend = hicache.HiCacheLSM(None, {"server": str(svc.socket), "server_timeout_ms": timeout_ms})
    assert client.put_batch(["kept"], [b"kept bytes"]) == [True]
    assert backend.batch_exists(["x"]) == 0  # opens the backend's pooled connection
    os.kill(svc.pid, signal.SIGSTOP)
    try:
        for call, want in (
            (lambda: backend.batch_exists(["a", "b"]), 0),
            (lambda: backend.exists("a"), False),
        ):
            started = time.monotonic()
            assert call() == want
            took = time.monotonic() - started
            # One timeout, not two: a timed-out call is not retried on a fresh connection.
            assert took < timeout_ms / 1000 + 0.7, took
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError):
            client.get("kept")
        assert time.monotonic() - started < timeout_ms / 1000 + 0.7
    finally:
        os.kill(svc.pid, signal.SIGCONT)
    assert client.get("kept") == b"kept bytes"
    assert backend.batch_exists(["x"]) == 0
    backend.close()


def test_a_forked_child_gets_its_own_connections(serve):
    """Python's multiprocessing forks by default: a child must not talk on its parent's
    sockets or write into its parent's arenas, or the two would read each other's replies."""
    svc = serve()
    client = Client(svc.socket, max_connections=1)
    assert client.put_batch(["parent"], [page_bytes("parent", 50_000)]) == [True]
    pid = os.fork()
    if pid == 0:  # the child: every failure is an exit code, never an exception upward
        ok = False
        try:
            for i in range(50):
                key = f"child-{i}"
                ok = client.put_batch([key], [page_bytes(key, 50_000)]) == [True]
                ok = ok and client.get("parent") == page_bytes("parent", 50_000)
                if not ok:
                    break
        finally:
            os._exit(0 if ok else 1)
    for i in range(50):
        key = f"parent-{i}"
        assert client.put_batch([key], [page_bytes(key, 50_000)]) == [True]
        assert client.get(key) == page_bytes(key, 50_000)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for i in range(50):
        assert client.get(f"child-{i}") == page_bytes(f"child-{i}", 50_000)
    assert client.get("parent") == page_bytes("parent", 50_000)


# ------------------------------------------------------- 5. clients killed with SIGKILL mid-put

# Puts 16 of its keys (256 KiB each, content fixed per key) at a time until it is killed.
PUTTER_CHILD = r"""
import random, sys
import sglang_lsm
from service_util import page_bytes

socket, slot, slots, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
keys = [f"kill-{i:03d}" for i in range(200) if i % slots == slot]
pages = {k: page_bytes(k, 256 << 10) for k in keys}
client = sglang_lsm.Client(socket, max_connections=1)
rng = random.Random(seed)
print("go", flush=True)
while True:
    batch = rng.sample(keys, 16)
    assert client.put_batch(batch, [pages[k] for k in batch]) == [True] * 16
"""

KEYS_200 = [f"kill-{i:03d}" for i in range(200)]
PAGE_256K = 256 << 10
SEGMENT = 2 << 20


def connections(client) -> float:
    return metric(client.metrics_text(), "sglang_lsm_service_connections")


def check_every_key(client, expected):
    """Every key present reads back exactly its content; absent keys are absent everywhere."""
    present = 0
    for lo in range(0, len(KEYS_200), 16):
        keys = KEYS_200[lo : lo + 16]
        bufs = [bytearray(PAGE_256K) for _ in keys]
        hits = client.get_batch(keys, bufs)
        for k, hit, buf in zip(keys, hits, bufs):
            if hit:
                present += 1
                assert bytes(buf) == expected[k], f"{k} read back other bytes"
            else:
                assert not client.exists(k), f"{k}: exists but get_batch missed it"
    return present


def test_100_clients_killed_mid_put_leave_whole_pages_and_no_leaked_space(
    tmp_path, serve, children
):
    config = tmp_path / "kill-config.json"
    # Small segments, so one leaked put (4 MiB) would stand out against the bound below.
    config.write_text(json.dumps({"segment_bytes": SEGMENT}))
    svc = serve("--config", str(config))
    client = Client(svc.socket, max_connections=1)
    expected = {k: page_bytes(k, PAGE_256K) for k in KEYS_200}
    rng = random.Random(20261204)
    slots, epochs, rounds = 2, 10, 5  # 10 epochs x 5 rounds x 2 children = 100 kills
    killed = written = 0
    started = time.monotonic()
    for epoch in range(epochs):
        # Each concurrent child owns its own keys: two live puts never race on one key.
        for _ in range(rounds):
            procs = [
                python_child(
                    PUTTER_CHILD, str(svc.socket), str(s), str(slots), str(rng.randrange(1 << 30))
                )
                for s in range(slots)
            ]
            children.extend(procs)
            for p in procs:
                assert read_line(p, 60, "putter start") == "go"
            # A put of 16 x 256 KiB takes a few ms here: most kills land inside one.
            time.sleep(rng.uniform(0.0, 0.015))
            for p in procs:
                p.send_signal(signal.SIGKILL)
            for p in procs:
                assert p.wait(timeout=30) == -signal.SIGKILL, child_stderr(p)
                p.stdin.close()
                killed += 1
            # The service finishes a dead client's put on its own; the next child (same
            # keys) waits for that, else both would write the page and the log would hold
            # the copy twice (see the bound below). Every killed connection is released.
            assert wait_until(lambda: connections(client) == 1, 10), client.metrics_text()

        present = check_every_key(client, expected)
        stats = client.stats()
        assert stats["pages"] == present
        assert stats["live_bytes"] >= present * PAGE_256K
        # The log holds the distinct pages present and at most one segment more (plus frame
        # headers): nothing a killed client was writing is left behind unaccounted.
        bound = present * (PAGE_256K + 4096) + SEGMENT
        assert stats["log_bytes"] <= bound, (epoch, present, stats["log_bytes"], bound)
        on_disk = sum(f.stat().st_size for f in (svc.store_dir / "vlog").glob("*.log"))
        assert on_disk <= bound, (epoch, present, on_disk, bound)
        assert stats["index_disk_bytes"] <= 4 << 20
        # Each page present was written exactly once in this epoch, and nothing else was.
        assert stats["put_pages"] - written == present, (epoch, stats["put_pages"], written)
        written = stats["put_pages"]
        if epoch < epochs - 1:
            # A fresh store each epoch, so later kills land in real writes, not no-op puts
            # of keys already stored.
            client.clear()
            assert client.stats()["pages"] == 0
    assert killed == 100
    assert written > 0
    assert svc.running(), svc.log()
    metrics = client.metrics_text()
    assert metric(metrics, "sglang_lsm_service_connections_total") >= killed + 1
    # The service could not answer these: the client died while its put was being served.
    assert svc.log().count("cannot reply; connection dropped") >= 1, svc.log()
    assert time.monotonic() - started < 90


# ------------------------------------------------------------- 6. a stopped client stalls nobody

# Loops puts and gets of its own keys; prints a line every 20 calls so the parent sees it run.
BUSY_CHILD = r"""
import sys
import sglang_lsm
from service_util import page_bytes

client = sglang_lsm.Client(sys.argv[1], max_connections=2)
keys = [f"busy-{i}" for i in range(32)]
pages = [page_bytes(k, 256 << 10) for k in keys]
bufs = [bytearray(256 << 10) for _ in keys]
n = 0
while True:
    lo = (n * 8) % 32
    client.put_batch(keys[lo : lo + 8], pages[lo : lo + 8])
    assert client.get_batch(keys[lo : lo + 8], bufs[lo : lo + 8]) == [True] * 8
    n += 1
    if n % 20 == 0:
        print("alive", n, flush=True)
"""


def test_a_sigstopped_client_never_stalls_the_others(serve, children):
    svc = serve()
    busy = python_child(BUSY_CHILD, str(svc.socket))
    children.append(busy)
    assert read_line(busy, 60, "busy client").startswith("alive")
    client = Client(svc.socket, timeout_ms=5000)
    rng = random.Random(6)
    for stop in range(3):
        # Stopped wherever it happens to be: between calls, mid-copy or mid-message.
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(busy.pid, signal.SIGSTOP)
        started = time.monotonic()
        slowest = 0.0
        for i in range(100):
            k = f"mine-{stop}-{i % 10}"
            op_started = time.monotonic()
            if i % 2 == 0:
                assert client.put_batch([k], [page_bytes(k, 64 << 10)]) == [True]
            else:
                buf = bytearray(64 << 10)
                assert client.get_batch([f"mine-{stop}-{(i - 1) % 10}"], [buf]) == [True]
                assert bytes(buf) == page_bytes(f"mine-{stop}-{(i - 1) % 10}", 64 << 10)
            slowest = max(slowest, time.monotonic() - op_started)
        took = time.monotonic() - started
        assert took < 5.0 and slowest < 2.0, (stop, took, slowest)
        printed = drain_lines(busy)
        os.kill(busy.pid, signal.SIGCONT)
        # It carries on where it stopped: a count beyond anything it printed before.
        last = max([int(line.split()[1]) for line in printed] + [0])
        while True:
            n = int(read_line(busy, 30, "busy client after SIGCONT").split()[1])
            if n > last + 20:
                break
    busy.kill()
    busy.wait(timeout=30)
    assert client.exists("busy-0") and client.get("mine-2-8") == page_bytes("mine-2-8", 64 << 10)


# ------------------------------------------------------------------ 7. a uid that is not allowed

# Imports the package as root, then becomes uid/gid 65534 (nobody) and connects.
NOBODY_CHILD = r"""
import json, os, sys
import sglang_lsm

os.setgroups([])
os.setgid(65534)
os.setuid(65534)
try:
    c = sglang_lsm.Client(sys.argv[1], timeout_ms=3000)
    ok = c.put_batch(["from-nobody"], [b"nobody's page"])
    print(json.dumps({"result": "served", "put": ok, "get": c.get("from-nobody").decode()}))
except sglang_lsm.ServiceRefusedError as e:
    print(json.dumps({"result": "refused", "code": e.code, "message": str(e)}))
except sglang_lsm.ServiceUnavailableError as e:
    print(json.dumps({"result": "unavailable", "code": e.code, "message": str(e)}))
"""


def as_nobody(children, socket) -> dict:
    proc = python_child(NOBODY_CHILD, str(socket), cwd="/")
    children.append(proc)
    out = json.loads(read_line(proc, 60, "uid 65534 client"))
    assert proc.wait(timeout=30) == 0, child_stderr(proc)
    return out


def test_a_uid_that_is_not_allowed_is_refused_with_a_clear_message(sockdir, serve, children):
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another uid")
    # Others may reach the socket's directory; the socket's own mode and the service decide.
    os.chmod(sockdir, 0o711)
    svc = serve()
    assert (os.stat(svc.socket).st_mode & 0o777) == 0o660

    # Mode 0660 (the default) keeps other users off the socket.
    out = as_nobody(children, svc.socket)
    assert out["result"] == "unavailable" and out["code"] == "unavailable", out
    assert "ermission denied" in out["message"], out

    # Past the file mode, the service itself refuses an unlisted uid and says how to allow it.
    os.chmod(svc.socket, 0o666)
    out = as_nobody(children, svc.socket)
    assert out["result"] == "refused" and out["code"] == "refused", out
    assert "--allow-uid" in out["message"] and "65534" in out["message"], out
    own = Client(svc.socket)
    assert not own.exists("from-nobody")
    metrics = own.metrics_text()
    assert metric(metrics, "sglang_lsm_service_refused_total") >= 1

    # Allowed by --allow-uid, the same client is served.
    allowed = serve("--allow-uid", "65534", name="allowed")
    os.chmod(allowed.socket, 0o666)
    out = as_nobody(children, allowed.socket)
    assert out == {"result": "served", "put": [True], "get": "nobody's page"}, out
    assert Client(allowed.socket).get("from-nobody") == b"nobody's page"


def test_the_client_bound_refuses_with_a_clear_message_and_frees_on_close(serve):
    svc = serve("--max-clients", "1")
    first = Client(svc.socket, max_connections=1)
    with pytest.raises(ServiceRefusedError, match="--max-clients") as refused:
        Client(svc.socket)
    assert refused.value.code == "refused"
    assert first.put_batch(["k"], [b"first"]) == [True]
    first.close()
    # Its connection goes with it, and the slot is free for the next client.
    assert wait_until(lambda: outcome(lambda: Client(svc.socket).get("k")) == ("ok", b"first"), 10)


# --------------------------------------------------------------------- 8. garbage on the socket

MAGIC = int.from_bytes(b"SLSM", "little")


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def frame(body: bytes) -> bytes:
    return struct.pack("<I", len(body)) + body


def _protocol_version() -> int:
    """The service's `PROTOCOL_VERSION`, read from its source so the two never drift."""
    src = os.path.join(
        os.path.dirname(__file__), "..", "..", "crates", "sglang-lsm", "src", "service", "mod.rs"
    )
    with open(src, encoding="utf-8") as f:
        found = re.search(r"pub const PROTOCOL_VERSION: u32 = (\d+);", f.read())
    assert found, f"PROTOCOL_VERSION not found in {src}"
    return int(found.group(1))


PROTOCOL_VERSION = _protocol_version()


def hello(version: int = PROTOCOL_VERSION, magic: int = MAGIC) -> bytes:
    # postcard: variant index, then each u32 as a varint.
    return frame(varint(0) + varint(magic) + varint(version))


def connect_raw(path: Path) -> socketlib.socket:
    s = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(path))
    return s


def read_until_closed(s: socketlib.socket) -> bytes:
    """What the peer sent before closing; a reset (it closed with our bytes unread) counts
    as closed too."""
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def handshaken(path: Path) -> socketlib.socket:
    s = connect_raw(path)
    s.sendall(hello())
    welcome = s.recv(4096)  # the arena's descriptor is dropped by a plain recv
    assert len(welcome) > 4 and welcome[4] == 0, welcome  # Response::Welcome
    return s


def test_garbage_on_the_socket_does_not_stop_the_service(serve):
    svc = serve("--request-timeout-ms", "1000")
    client = Client(svc.socket, timeout_ms=5000)
    keep = page_bytes("keep", 100_000)
    assert client.put_batch(["keep"], [keep]) == [True]
    rng = random.Random(8)

    # Instead of a hello: random bytes, a huge length, a truncated frame.
    for junk in (
        rng.randbytes(4096),
        struct.pack("<I", 0xFFFFFFFF) + rng.randbytes(64),
        struct.pack("<I", 1000) + b"\x00\x01",
        hello(magic=MAGIC ^ 1),
    ):
        s = connect_raw(svc.socket)
        try:
            s.sendall(junk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            s.shutdown(socketlib.SHUT_WR)
        except OSError:
            pass
        reply = read_until_closed(s)
        s.close()
        # Dropped, at most with a refusal (Response::Error); never welcomed.
        assert reply == b"" or reply[4] == 7, reply
        assert client.get("keep") == keep

    # A hello of another protocol version is refused with a message that says so.
    s = connect_raw(svc.socket)
    s.sendall(hello(version=99))
    reply = read_until_closed(s)
    s.close()
    assert b"protocol v99" in reply and b"same sglang-lsm release" in reply, reply

    # After a good handshake: garbage, a huge length, a truncated message, an extent outside
    # the arena. Garbage drops that connection; a bad extent is an error reply.
    for junk in (
        rng.randbytes(512),
        struct.pack("<I", 0xFFFFFFFF),
        struct.pack("<I", 100) + b"\x01\x02",
    ):
        s = handshaken(svc.socket)
        s.sendall(junk)
        s.shutdown(socketlib.SHUT_WR)
        assert read_until_closed(s) == b"", "dropped without a reply"
        s.close()
    # Put { keys: ["evil"], prefix: [], pages: [Extent { offset: 1 << 40, len: 4096 }],
    # continuing: false }, keys packed as (bytes, lens): answered with an error reply, and
    # nothing outside the arena is read or stored.
    s = handshaken(svc.socket)
    keys = varint(4) + b"evil" + varint(1) + varint(4)
    no_keys = varint(0) + varint(0)
    s.sendall(
        frame(varint(1) + keys + no_keys + varint(1) + varint(1 << 40) + varint(4096) + b"\x00")
    )
    try:
        reply = s.recv(4096)
    except ConnectionResetError:
        reply = b""
    assert len(reply) > 5 and reply[4] == 7, reply  # Response::Error, the connection kept
    s.close()
    assert not client.exists("evil")

    # Connections stuck mid-message hold only themselves; the others are served meanwhile,
    # and the request timeout then drops them.
    stuck = []
    for _ in range(10):
        s = handshaken(svc.socket)
        s.sendall(struct.pack("<I", 100) + b"\x05" * 10)
        stuck.append(s)
    started = time.monotonic()
    for i in range(50):
        assert client.put_batch([f"after-{i}"], [page_bytes(f"after-{i}", 8192)]) == [True]
    assert time.monotonic() - started < 3
    for s in stuck:
        assert read_until_closed(s) == b""
        s.close()

    bufs = [bytearray(8192) for _ in range(50)]
    assert client.get_batch([f"after-{i}" for i in range(50)], bufs) == [True] * 50
    assert [bytes(b) for b in bufs] == [page_bytes(f"after-{i}", 8192) for i in range(50)]
    assert client.get("keep") == keep
    metrics = client.metrics_text()
    assert metric(metrics, "sglang_lsm_service_protocol_errors_total") >= 6, metrics
    assert svc.running()
    assert "connection dropped" in svc.log(), "the service logs what it dropped"
    assert svc.stop() == 0
    assert "sglang-lsm serve: stopped" in svc.log()
    assert not svc.socket.exists(), "a clean stop removes the socket"
