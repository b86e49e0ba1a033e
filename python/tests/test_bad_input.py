"""Bad input from the caller never crashes the process, never costs the store a page, and
never reads or writes memory it was not given (issues 14, 16). The backend's lock release
after a failed start is tested in test_hicache.py."""

from __future__ import annotations

import mmap
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sglang_lsm
from sglang_lsm import InvalidArgumentError

PAGE = 8192


def _page(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, PAGE, dtype=np.uint8)


def _run_isolated(body: str) -> subprocess.CompletedProcess:
    """Runs `body` in a child: a segfault there fails the test instead of killing pytest."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=120,
    )


BAD_POINTERS = {
    "address 1": "1",
    "address 2**63": "1 << 63",
    "freed mapping": "unmapped",
    "prot_none": "prot_none",
    "size past the buffer's mapping": "too_long",
}


@pytest.mark.parametrize("kind", sorted(BAD_POINTERS))
@pytest.mark.parametrize("call", ["put", "get", "follower_get"])
def test_bad_pointer_is_a_typed_error_and_the_store_is_unchanged(tmp_path, kind, call):
    out = _run_isolated(
        f"""
        import ctypes, mmap, sys
        import numpy as np
        import sglang_lsm
        from sglang_lsm import InvalidArgumentError

        PAGE = {PAGE}
        store = sglang_lsm.Store({str(tmp_path / "kv")!r})
        good = np.arange(PAGE, dtype=np.uint32).astype(np.uint8)
        assert store.put_batch(["kept"], [good]) == [True]
        store.flush()

        kind = {BAD_POINTERS[kind]!r}
        size = PAGE
        if kind == "unmapped":
            m = mmap.mmap(-1, 4 * mmap.PAGESIZE)
            addr = np.frombuffer(m, dtype=np.uint8).ctypes.data
            m.close()
        elif kind == "prot_none":
            libc = ctypes.CDLL(None, use_errno=True)
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                  ctypes.c_int, ctypes.c_int, ctypes.c_long]
            addr = libc.mmap(None, 4 * mmap.PAGESIZE, 0, 0x22, -1, 0)  # PROT_NONE, anon
        elif kind == "too_long":
            m = mmap.mmap(-1, mmap.PAGESIZE)
            addr = np.frombuffer(m, dtype=np.uint8).ctypes.data
            size = 1 << 30
        else:
            addr = eval(kind)

        call = {call!r}
        follower = sglang_lsm.Follower({str(tmp_path / "kv")!r}, refresh_interval_ms=0)
        try:
            if call == "put":
                store.put_batch_ptrs(["bad"], [[addr]], [[size]])
            elif call == "get":
                store.get_batch_ptrs(["kept"], [[addr]], [[size]])
            else:
                follower.get_batch_ptrs(["kept"], [[addr]], [[size]])
        except InvalidArgumentError as e:
            assert "not" in str(e) and "memory of this process" in str(e), e
        else:
            sys.exit("no error raised")
        # The store is unchanged: nothing written, nothing dropped, still usable.
        assert not store.exists("bad")
        assert store.get("kept") == good.tobytes()
        stats = store.stats()
        assert stats["get_corrupt"] == 0, stats
        assert store.put_batch(["after"], [good]) == [True]
        print("ok")
        """
    )
    assert out.returncode == 0 and "ok" in out.stdout, (out.returncode, out.stdout, out.stderr)


def test_read_only_destination_is_refused_and_the_page_kept(tmp_path):
    """A destination the process may read but not write (a read-only mapping) would fault on
    the copy; it is refused up front and the page stays in the store."""
    store = sglang_lsm.Store(tmp_path / "kv")
    try:
        page = _page(1)
        assert store.put_batch(["k"], [page]) == [True]
        ro = mmap.mmap(-1, PAGE, prot=mmap.PROT_READ)
        addr = np.frombuffer(ro, dtype=np.uint8).ctypes.data
        with pytest.raises(InvalidArgumentError, match="not writable memory"):
            store.get_batch_ptrs(["k"], [[addr]], [[PAGE]])
        assert store.get("k") == page.tobytes()
        assert store.stats()["get_corrupt"] == 0
    finally:
        store.close()


def test_good_pointers_still_round_trip(tmp_path):
    """The probe must not refuse real memory, page-aligned or not, across page boundaries."""
    store = sglang_lsm.Store(tmp_path / "kv")
    try:
        src = _page(2)
        # An odd offset into a larger buffer: the region straddles memory pages.
        backing = np.zeros(PAGE + 4096 + 3, dtype=np.uint8)
        part = backing[3 : 3 + PAGE]
        part[:] = src
        assert store.put_batch_ptrs(["k"], [[part.ctypes.data]], [[PAGE]]) == [True]
        dst = np.zeros(PAGE, dtype=np.uint8)
        assert store.get_batch_ptrs(["k"], [[dst.ctypes.data]], [[PAGE]]) == [True]
        assert np.array_equal(dst, src)
    finally:
        store.close()


def test_follower_refresh_interval_too_large_is_a_typed_error(tmp_path):
    with pytest.raises(InvalidArgumentError, match="refresh_interval_ms"):
        sglang_lsm.Follower(tmp_path / "kv", 1 << 70)
