"""SGLang's v2 storage calls for hybrid models (Mamba, sliding window, DSA indexer,
DeepSeek-V4 compressed pools, draft pools), mixed into :class:`sglang_lsm.hicache.HiCacheLSM`.

**How pools map onto keys.** SGLang names a sidecar entry by its KV page's key and the pool
(``"<page hash>"`` + pool name). The store keeps it under ``<pool namespace>:<page hash>``,
where the pool namespace is a digest of the deployment (as for KV pages), the pool's name,
its layout (class, dtype, page size, byte size of each part) and how its bytes move (pointer
parts or flat page). Each entry is stored as a **child of its KV page**
(``put_batch_with_parents``), whether the KV page is stored already or comes after (SGLang
backs up sidecars first). So:

- one ``exists_batch`` answers for every pool of a batch of pages;
- an entry never outlives its KV page: deleting or evicting the KV page takes the entry
  along, and a KV page is no leaf (never evicted) while one of its entries lives;
- a crash between the sidecar and the KV write leaves a KV page missing, and
  ``batch_exists_v2`` then reports nothing restorable past it: every page's KV and every
  pool's entries are checked, never assumed.

**Hit policies** follow SGLang's ``HiCacheFile.batch_exists_v2`` exactly (``ALL_PAGES``,
``TRAILING_PAGES`` with every restorable length), plus ``BLOCK_GROUPS``, which HiCacheFile
refuses; see :func:`_pool_verdict`.

Every call logs and returns ``False`` entries (or an empty result) instead of raising into
SGLang's threads.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Dict, List, Optional, Sequence

logger = logging.getLogger(__name__)

_KV = "kv"
_ALL_PAGES = "all_pages"
_TRAILING_PAGES = "trailing_pages"
_BLOCK_GROUPS = "block_groups"
# Pools SGLang shards by TP rank even when the model's (MLA) KV is replicated.
_TP_SHARDED_POOLS = frozenset({"mamba"})


def pool_name(name: Any) -> str:
    """A pool name as a plain string (SGLang passes ``PoolName`` members or strings)."""
    return str(getattr(name, "value", name))


def _policy(transfer: Any) -> str:
    return str(getattr(getattr(transfer, "hit_policy", _ALL_PAGES), "value", _ALL_PAGES))


def page_regions(pool: Any, page_tokens: int, n_pages: int, host_indices: Any) -> tuple:
    """One list of pointer parts (and one of sizes) per page, from ``get_page_buffer_meta``.

    Every SGLang host pool lists its pointers page by page, so the parts of page ``i`` are
    the ``i``-th run of ``len(ptrs) / n_pages``.
    """
    n_indices = int(host_indices.numel())
    if n_indices != n_pages * page_tokens:
        raise ValueError(
            f"{n_pages} keys but {n_indices} host indices (page size {page_tokens})"
        )
    ptrs, sizes = pool.get_page_buffer_meta(host_indices)
    if len(ptrs) != len(sizes) or len(ptrs) % n_pages:
        raise ValueError(
            f"host pool returned {len(ptrs)} pointers and {len(sizes)} sizes for {n_pages} pages"
        )
    per = len(ptrs) // n_pages
    return (
        [ptrs[i * per : (i + 1) * per] for i in range(n_pages)],
        [sizes[i * per : (i + 1) * per] for i in range(n_pages)],
    )


@dataclasses.dataclass
class _Pool:
    """A registered host pool and how its pages move."""

    name: str
    pool: Any
    page_tokens: int
    # "pointers": zero copy through get_page_buffer_meta; "flat": get_data_page and
    # set_from_flat_data_page through one staging buffer per batch.
    io: str
    page_parts: List[int]
    prefix: str = ""


def _describe(pool: Any) -> tuple:
    """How pages of ``pool`` move, and their byte parts; raises if neither way works."""
    import torch

    page_tokens = int(getattr(pool, "page_size", 1) or 1)
    pointer_error: Optional[BaseException] = None
    if hasattr(pool, "get_page_buffer_meta"):
        try:
            _, sizes = pool.get_page_buffer_meta(torch.arange(page_tokens, dtype=torch.int64))
            if sizes:
                return page_tokens, "pointers", [int(s) for s in sizes]
        except Exception as e:  # noqa: BLE001 - e.g. Mamba with slot side states
            pointer_error = e
    if all(
        hasattr(pool, m)
        for m in ("get_data_page", "set_from_flat_data_page", "get_dummy_flat_data_page")
    ):
        page_bytes = int(pool.get_dummy_flat_data_page().numel())
        if page_bytes > 0:
            return page_tokens, "flat", [page_bytes]
    raise ValueError(
        f"{type(pool).__name__} offers neither get_page_buffer_meta"
        f"{f' ({pointer_error})' if pointer_error else ''} nor flat data pages"
    )


def _pool_verdict(
    policy: str, transfer: Any, present: List[bool], kv_pages: int
) -> tuple[int, Optional[set]]:
    """(pages this pool reports, restorable prefix lengths it allows, or None: no gate).

    ``present[i]``: the pool's entry for KV page ``i`` is stored (``i < kv_pages``).
    """
    if policy == _ALL_PAGES:
        boundary = next((i for i in range(kv_pages) if not present[i]), kv_pages)
        return boundary, set(range(1, boundary + 1))
    if policy == _TRAILING_PAGES:
        keys = getattr(transfer, "keys", None)
        trailing = max(1, len(keys) if keys else 1)
        # missing_before[i]: entries missing among the first i pages.
        missing_before = [0]
        for p in present[:kv_pages]:
            missing_before.append(missing_before[-1] + (0 if p else 1))
        allowed = {
            n
            for n in range(1, kv_pages + 1)
            if missing_before[n] == missing_before[max(0, n - trailing)]
        }
        return max(allowed, default=0), allowed
    if policy == _BLOCK_GROUPS:
        # Whole blocks of `block_pages` FULL pages from the span start, each complete only
        # if every page of it has its entry. The pool's own verdict; it never gates the KV
        # hit (SGLang's PoolHitPolicy docstring). No 0.5.23 caller sends it yet.
        block = int(getattr(transfer, "block_pages", 0) or 0)
        if block <= 0:
            raise ValueError(f"BLOCK_GROUPS transfer with block_pages={block}")
        covered = 0
        while covered + block <= kv_pages and all(present[covered : covered + block]):
            covered += block
        return covered, None
    raise ValueError(f"unsupported pool hit policy {policy!r}")


class HybridCalls:
    """The v2 calls. Needs from its host class: ``store``, ``is_writer``, ``interface_v1``,
    ``namespace_info``, ``_prefix_v1``, ``_prefix_generic``, ``_digest``, ``_failed``,
    ``_prefix_keys``, ``_record``, ``is_mla``, ``tp_rank``, ``tp_size``, ``batch_get_v1`` and
    ``batch_set_v1``."""

    store: Any
    is_writer: bool
    interface_v1: bool
    namespace_info: dict
    is_mla: bool
    tp_rank: int
    tp_size: int
    _prefix_v1: str
    _prefix_generic: str

    def _hybrid_init(self) -> None:
        self._pools: Dict[str, _Pool] = {}
        self._unknown_logged: set = set()

    # ------------------------------------------------------------------ registration

    def register_mem_host_pool_v2(self, host_pool: Any, host_pool_name: Any) -> None:
        """Registers one of SGLang's host pools (once per pool, before the v2 calls).

        A pool registered again under the same name replaces the first (a warning is logged
        when it is a different object); its namespace follows the new layout, so pages of the
        old layout are never read into it. A pool whose pages cannot be described is logged
        and left unregistered: its entries then miss.
        """
        name = pool_name(host_pool_name)
        try:
            page_tokens, io, parts = _describe(host_pool)
        except Exception as e:  # noqa: BLE001 - SGLang must keep starting without this pool
            logger.error("HiCacheLSM: pool %r cannot be stored (%s); its pages will miss", name, e)
            self._pools.pop(name, None)
            return
        old = self._pools.get(name)
        if old is not None and old.pool is not host_pool:
            logger.warning("HiCacheLSM: pool %r registered again; the new one replaces it", name)
        self._pools[name] = _Pool(name, host_pool, page_tokens, io, parts)
        self._unknown_logged.discard(name)
        self._set_pool_prefixes()
        logger.info(
            "HiCacheLSM: pool %r (%s, page %d tokens, %s I/O, parts %s)",
            name,
            type(host_pool).__name__,
            page_tokens,
            io,
            parts,
        )

    def on_host_pools_registered(self) -> None:
        """SGLang's hook after pool registration: namespaces are final now."""
        self._set_pool_prefixes()

    def _set_pool_prefixes(self) -> None:
        """Every pool's namespace: the deployment's (with TP for rank-sharded pools) plus the
        pool's own layout. Recomputed when the KV pool registers, as its info changes."""
        base = {k: v for k, v in self.namespace_info.items() if k not in ("pool", "page_parts")}
        for p in self._pools.values():
            info = dict(base)
            if p.name in _TP_SHARDED_POOLS:
                info["tp"] = [self.tp_rank, self.tp_size]
            info["v2_pool"] = {
                "name": p.name,
                "class": type(p.pool).__name__,
                "dtype": str(getattr(p.pool, "dtype", "")),
                "layout": str(getattr(p.pool, "layout", "")),
                "page_tokens": p.page_tokens,
                "io": p.io,
                "parts": p.page_parts,
            }
            p.prefix = self._digest({**info, "interface": "v2"}) + ":"

    def _kv_prefix(self) -> str:
        return self._prefix_v1 if self.interface_v1 else self._prefix_generic

    def _pool(self, name: str, what: str) -> Optional[_Pool]:
        p = self._pools.get(name)
        if p is None and name not in self._unknown_logged:
            self._unknown_logged.add(name)
            logger.error(
                "HiCacheLSM: %s for pool %r, which was never registered "
                "(register_mem_host_pool_v2); its pages miss",
                what,
                name,
            )
        return p

    # ------------------------------------------------------------------ exists

    def batch_exists_v2(
        self, keys: List[str], pool_transfers: Optional[List[Any]] = None, extra_info: Any = None
    ) -> Any:
        """The longest usable prefix of ``keys`` over the KV pages and every pool's policy,
        with every restorable length (``restorable_prefix_pages``), in two engine calls: one
        probe of the KV chain and one ``exists_batch`` of every pool's entries. Never raises:
        an error counts as no hit."""
        try:
            return self._exists_v2(keys, pool_transfers or [], extra_info)
        except Exception as e:  # noqa: BLE001 - never raise into SGLang's prefetch thread
            self._failed(e, "batch_exists_v2 of %d keys", len(keys))
            return _result(0, {}, [])

    def _exists_v2(self, keys: List[str], transfers: List[Any], extra_info: Any) -> Any:
        if not keys:
            return _result(0, {}, [])
        kv_prefix = self._kv_prefix()
        kv_pages = self.store.probe(
            [kv_prefix + k for k in keys], self._prefix_keys(extra_info, kv_prefix)
        )
        hit_count: Dict[Any, int] = {_pool_key(_KV): kv_pages} if kv_pages else {}
        restorable = list(range(1, kv_pages + 1))
        if not restorable or not transfers:
            return _result(kv_pages, hit_count, restorable)
        # Presence of every pool's entries for the KV pages found, in one engine call.
        wanted: List[str] = []
        spans = []
        for t in transfers:
            name = pool_name(t.name)
            p = self._pool(name, "batch_exists_v2")
            start = len(wanted)
            if p is not None:
                wanted.extend(p.prefix + k for k in keys[:kv_pages])
            spans.append((t, name, start, len(wanted) if p is not None else None))
        present_all = self.store.exists_batch(wanted) if wanted else []
        for t, name, start, end in spans:
            if not restorable:
                break
            present = present_all[start:end] if end is not None else [False] * kv_pages
            boundary, allowed = _pool_verdict(_policy(t), t, present, kv_pages)
            if boundary:
                hit_count[t.name] = boundary
            if allowed is not None:
                restorable = [n for n in restorable if n in allowed]
        final = restorable[-1] if restorable else 0
        return _result(final, hit_count, restorable)

    # ------------------------------------------------------------------ get / set

    def batch_get_v2(self, transfers: List[Any], extra_info: Any = None) -> Dict[Any, List[bool]]:
        """Reads each transfer's entries into its host pool at ``host_indices``: one engine
        call per pool. Returns one bool per key per pool; never raises."""
        return {t.name: self._io_v2(t, extra_info, write=False) for t in transfers}

    def batch_set_v2(self, transfers: List[Any], extra_info: Any = None) -> Dict[Any, List[bool]]:
        """Writes each transfer's entries from its host pool, each a child of its KV page:
        one engine call per pool. Returns one bool per key per pool; never raises."""
        return {t.name: self._io_v2(t, extra_info, write=True) for t in transfers}

    def _io_v2(self, t: Any, extra_info: Any, write: bool) -> List[bool]:
        keys = list(getattr(t, "keys", None) or [])
        n = len(keys)
        if n == 0:
            return []
        name = pool_name(t.name)
        what = "batch_set_v2" if write else "batch_get_v2"
        try:
            if name == _KV:
                # The KV pool itself: exactly the v1 path, so the bytes match v1's pages.
                call = self.batch_set_v1 if write else self.batch_get_v1
                return call(keys, t.host_indices, extra_info)
            p = self._pool(name, what)
            if p is None:
                return [False] * n
            if write and not self.is_writer:
                return [False] * n  # an MLA follower rank stores nothing
            host_indices = t.host_indices
            if host_indices is None or int(host_indices.numel()) != n * p.page_tokens:
                got = 0 if host_indices is None else int(host_indices.numel())
                logger.error(
                    "HiCacheLSM: %s for pool %r: %d keys need %d host indices, got %d",
                    what,
                    name,
                    n,
                    n * p.page_tokens,
                    got,
                )
                return [False] * n
            names = [p.prefix + k for k in keys]
            if p.io == "pointers":
                return self._pointer_io(p, names, keys, host_indices, write)
            return self._flat_io(p, names, keys, host_indices, write)
        except Exception as e:  # noqa: BLE001 - never raise into SGLang's threads
            self._failed(e, "%s of %d pages of pool %r", what, n, name)
            return [False] * n

    def _pointer_io(
        self, p: _Pool, names: List[str], keys: List[str], host_indices: Any, write: bool
    ) -> List[bool]:
        ptrs, sizes = page_regions(p.pool, p.page_tokens, len(names), host_indices)
        if write:
            parents = [self._kv_prefix() + k for k in keys]
            return self.store.put_batch_ptrs(names, ptrs, sizes, parent_keys=parents)
        return self.store.get_batch_ptrs(names, ptrs, sizes)

    def _flat_io(
        self, p: _Pool, names: List[str], keys: List[str], host_indices: Any, write: bool
    ) -> List[bool]:
        import torch

        page_bytes = p.page_parts[0]
        starts = [int(i) for i in host_indices[:: p.page_tokens].tolist()]
        if write:
            pages = [_bytes_of(p.pool.get_data_page(i, flat=True)) for i in starts]
            if any(pg.numel() != page_bytes for pg in pages):
                raise ValueError(f"a flat page of pool {p.name!r} is not {page_bytes} bytes")
            parents = [self._kv_prefix() + k for k in keys]
            return self.store.put_batch_ptrs(
                names,
                [[int(pg.data_ptr())] for pg in pages],
                [[page_bytes] for _ in pages],
                parent_keys=parents,
            )
        staging = torch.empty(len(names) * page_bytes, dtype=torch.uint8)
        base = int(staging.data_ptr())
        ok = self.store.get_batch_ptrs(
            names,
            [[base + i * page_bytes] for i in range(len(names))],
            [[page_bytes] for _ in names],
        )
        for i, (hit, index) in enumerate(zip(ok, starts)):
            if hit:
                p.pool.set_from_flat_data_page(
                    index, staging[i * page_bytes : (i + 1) * page_bytes]
                )
        return ok


def _bytes_of(tensor: Any) -> Any:
    """A contiguous uint8 view of a page tensor (copied once if it is not contiguous)."""
    import torch

    t = tensor if tensor.is_contiguous() else tensor.contiguous()
    return t.view(torch.uint8).reshape(-1) if t.dtype != torch.uint8 else t.reshape(-1)


def _pool_key(name: str) -> Any:
    """SGLang's ``PoolName`` member for ``name`` where SGLang is importable."""
    try:
        from sglang.srt.mem_cache.hicache_storage import PoolName

        return PoolName(name)
    except Exception:  # noqa: BLE001 - standalone use: plain strings
        return name


def _result(kv_pages: int, hit_count: Dict[Any, int], restorable: Sequence[int]) -> Any:
    """SGLang's ``PoolTransferResult``, or a plain stand-in without SGLang."""
    try:
        from sglang.srt.mem_cache.hicache_storage import PoolTransferResult

        return PoolTransferResult(kv_pages, hit_count, list(restorable))
    except Exception:  # noqa: BLE001 - standalone use
        return _PlainResult(kv_pages, hit_count, list(restorable))


@dataclasses.dataclass
class _PlainResult:
    kv_hit_pages: int
    extra_pool_hit_pages: Dict[Any, int]
    restorable_prefix_pages: Optional[List[int]] = None
