"""Damaged files, through the Python package as SGLang opens it (issue 14): one bad segment
or a damaged index never keeps the store from opening, and never returns wrong bytes."""

from __future__ import annotations

import os
from pathlib import Path

import sglang_lsm

PAGE_BYTES = 16 << 10
CHAINS, PAGES_PER_CHAIN = 6, 32
# Small segments so every chain spans several; small memtables so the index has tables.
OPTIONS = {"segment_bytes": 1 << 20, "memtable_bytes": 64 << 10}


def page(key: str) -> bytes:
    seed = sum(key.encode()) % 251
    return bytes((seed + i) % 256 for i in range(PAGE_BYTES))


def chains() -> list[list[str]]:
    return [[f"c{c}-p{i:02d}" for i in range(PAGES_PER_CHAIN)] for c in range(CHAINS)]


def build(path: Path) -> list[list[str]]:
    all_chains = chains()
    with sglang_lsm.Store(path, **OPTIONS) as s:
        # Interleaved, so each chain crosses segments: one page of every chain per round.
        for i in range(PAGES_PER_CHAIN):
            for chain in all_chains:
                prefix = chain[:i]
                assert s.put_batch([chain[i]], [page(chain[i])], prefix) == [True]
        s.flush()
    return all_chains


def segments(path: Path) -> list[Path]:
    return sorted((path / "vlog").glob("seg-*.log"))


def check_no_orphans_and_exact(s, all_chains) -> int:
    """Every chain reads back exactly up to its first missing page and holds nothing after
    it. Returns the number of pages present."""
    present = 0
    for chain in all_chains:
        lead = s.probe(chain)
        for i, key in enumerate(chain):
            got = s.get(key)
            if i < lead:
                assert got == page(key), key
                present += 1
            else:
                assert got is None and not s.exists(key), f"{key} is an orphan"
    return present


def test_a_zeroed_segment_header_is_quarantined_and_the_rest_served(tmp_path):
    path = tmp_path / "store"
    all_chains = build(path)
    sealed = segments(path)[1]  # neither the first nor the active one
    held = {k for chain in all_chains for k in chain if k.encode() in sealed.read_bytes()}
    assert held, "the segment holds pages"
    with open(sealed, "r+b") as f:
        f.write(bytes(4096))
    with sglang_lsm.Store(path, **OPTIONS) as s:
        st = s.stats()
        assert st["quarantined_segments"] == 1, st
        present = check_no_orphans_and_exact(s, all_chains)
        assert 0 < present <= CHAINS * PAGES_PER_CHAIN - len(held)
        assert "sglang_lsm_quarantined_segments 1" in s.metrics_text()
        # Writes go on, and survive another reopen.
        assert s.put_batch(["after"], [page("after")]) == [True]
    assert (path / "vlog" / "quarantine" / sealed.name).exists()
    with sglang_lsm.Store(path, **OPTIONS) as s:
        assert s.get("after") == page("after")
        assert check_no_orphans_and_exact(s, all_chains) == present


def test_a_stray_segment_of_random_bytes_costs_nothing(tmp_path):
    path = tmp_path / "store"
    all_chains = build(path)
    (path / "vlog" / "seg-0000099999.log").write_bytes(os.urandom(3 << 20))
    with sglang_lsm.Store(path, **OPTIONS) as s:
        assert s.stats()["quarantined_segments"] == 1
        assert check_no_orphans_and_exact(s, all_chains) == CHAINS * PAGES_PER_CHAIN


def test_a_garbage_index_is_rebuilt_from_the_log(tmp_path):
    path = tmp_path / "store"
    all_chains = build(path)
    with sglang_lsm.Store(path, **OPTIONS) as s:
        assert s.delete(all_chains[0][20]) is True  # deleted pages must stay deleted
    tables = sorted((path / "index" / "tables").iterdir())
    assert tables, "the index has tables"
    for t in tables:
        t.write_bytes(os.urandom(t.stat().st_size))
    with sglang_lsm.Store(path, **OPTIONS) as s:
        assert s.stats()["index_rebuilds"] == 1
        present = check_no_orphans_and_exact(s, all_chains)
        assert present == CHAINS * PAGES_PER_CHAIN - (PAGES_PER_CHAIN - 20)
        assert s.probe(all_chains[0]) == 20
    assert any(p.name.startswith("index.damaged-") for p in path.iterdir())
