"""sglang-lsm: a KV-separated, prefix-preserving LSM storage engine for LLM KV-cache pages.

The plain API stores opaque byte pages under string or bytes keys::

    import sglang_lsm

    with sglang_lsm.Store("/data/kv", capacity_bytes=100 * 10**9) as s:
        s.put_batch(["a", "b"], [b"page-a", b"page-b"])
        buf = bytearray(6)
        assert s.get_batch(["a"], [buf]) == [True] and bytes(buf) == b"page-a"
        assert s.probe(["a", "b", "c"]) == 2

SGLang's HiCache backend built on it is :class:`sglang_lsm.hicache.HiCacheLSM`.

Keys are ``str`` (encoded as UTF-8) or ``bytes``. Values are any object exposing the buffer
protocol (``bytes``, ``bytearray``, ``memoryview``, numpy arrays), or a list of such objects
whose contents are concatenated in order (for example a page's K and V halves). Torch tensors
do not expose the buffer protocol: pass ``tensor.data_ptr()`` and byte sizes to the ``*_ptrs``
methods instead.

All methods release the GIL while the engine works and may be called from several threads at
once. Errors are raised as :class:`StoreError` subclasses (see :mod:`sglang_lsm.errors`).
"""

from __future__ import annotations

import json
from typing import Any, Sequence, Union

from . import _native
from .errors import (
    CascadeUnfinishedError,
    CorruptStoreError,
    InvalidArgumentError,
    LengthMismatchError,
    NoSpaceError,
    ServiceRefusedError,
    ServiceUnavailableError,
    StoreClosedError,
    StoreError,
    StoreIOError,
    StoreLockedError,
)

__all__ = [
    "Store",
    "Follower",
    "Client",
    "StoreError",
    "InvalidArgumentError",
    "LengthMismatchError",
    "StoreLockedError",
    "NoSpaceError",
    "StoreIOError",
    "CorruptStoreError",
    "StoreClosedError",
    "ServiceUnavailableError",
    "ServiceRefusedError",
    "CascadeUnfinishedError",
    "__version__",
]

__version__: str = _native.__version__

Key = Union[str, bytes]


class _PageCalls:
    """The calls a :class:`Store` and a :class:`Client` share, with the same results."""

    _native: Any

    def put_batch(
        self,
        keys: Sequence[Key],
        values: Sequence[Any],
        prefix_keys: Sequence[Key] | None = None,
        parent_keys: Sequence[Key] | None = None,
    ) -> list[bool]:
        """Stores one page per key.

        Args:
            keys: the page keys. By default they form a chain: ``keys[i-1]`` is the parent
                of ``keys[i]`` (a page lives no longer than its parent).
            values: one entry per key: a buffer object, or a list/tuple of buffer objects
                stored concatenated.
            prefix_keys: the keys of the pages that precede ``keys[0]`` in its token
                sequence, oldest first (SGLang's ``extra_info.prefix_keys``); the last one is
                ``keys[0]``'s parent. Optional.
            parent_keys: instead of a chain, one parent key per page (stored or not yet):
                how a hybrid model's sidecar entries hang under their KV pages. Deleting or
                evicting a parent takes its children along. Not with ``prefix_keys``.

        Returns:
            One bool per key: ``True`` if the page is stored (including when the key already
            existed, which leaves the stored page unchanged), ``False`` if the engine declined
            it (for example, no room within ``capacity_bytes``).
        """
        return self._native.put_batch(keys, values, prefix_keys, parent_keys)

    def get_batch(self, keys: Sequence[Key], buffers: Sequence[Any]) -> list[bool]:
        """Reads pages into caller-owned writable buffers.

        Args:
            keys: the page keys.
            buffers: one entry per key: a writable buffer object, or a list/tuple of them
                filled in order. Their total length must equal the stored page length, else
                :class:`LengthMismatchError` is raised. Buffers must not overlap.

        Returns:
            One bool per key: ``True`` if the page was read, ``False`` on a miss (that
            buffer is left unspecified).
        """
        return self._native.get_batch(keys, buffers)

    def put_batch_ptrs(
        self,
        keys: Sequence[Key],
        ptrs: Sequence[Sequence[int]],
        sizes: Sequence[Sequence[int]],
        prefix_keys: Sequence[Key] | None = None,
        parent_keys: Sequence[Key] | None = None,
    ) -> list[bool]:
        """Like :meth:`put_batch`, reading page parts from raw host memory.

        ``ptrs[i]`` and ``sizes[i]`` list the addresses (``tensor.data_ptr()``) and byte
        lengths of key ``i``'s parts, concatenated in order. The memory must be host (CPU)
        memory that stays valid and unchanged for the duration of the call; the store cannot
        check that.
        """
        return self._native.put_batch_ptrs(keys, ptrs, sizes, prefix_keys, parent_keys)

    def get_batch_ptrs(
        self,
        keys: Sequence[Key],
        ptrs: Sequence[Sequence[int]],
        sizes: Sequence[Sequence[int]],
    ) -> list[bool]:
        """Like :meth:`get_batch`, writing page parts into raw host memory.

        ``ptrs[i]`` and ``sizes[i]`` list the destination addresses and byte lengths of key
        ``i``'s parts. The memory must be writable host memory, valid for the duration of the
        call; regions must not overlap (checked).
        """
        return self._native.get_batch_ptrs(keys, ptrs, sizes)

    def get(self, key: Key) -> bytes | None:
        """Returns a copy of the page stored under ``key``, or ``None`` if there is none."""
        return self._native.get(key)

    def probe(self, keys: Sequence[Key], prefix_keys: Sequence[Key] | None = None) -> int:
        """Returns how many of ``keys``, counted from the start, are stored (stops at the
        first missing key). ``prefix_keys`` is as for :meth:`put_batch`."""
        return self._native.probe(keys, prefix_keys)

    def exists(self, key: Key) -> bool:
        """Whether a page is stored under ``key``."""
        return self._native.exists(key)

    def exists_batch(self, keys: Sequence[Key]) -> list[bool]:
        """Whether each page is stored, in one call (unlike :meth:`probe`, a miss does not
        end the answer)."""
        return self._native.exists_batch(keys)

    def delete(self, key: Key) -> bool:
        """Removes the page under ``key`` and every page stored after it in its chain (its
        descendants, which nothing could reach without it); returns whether there was one."""
        return self._native.delete(key)

    def stats(self) -> dict[str, Any]:
        """Engine statistics (counts, bytes, capacity, compaction state) as a dict."""
        return json.loads(self._native.stats_json())

    def metrics_text(self) -> str:
        """Counters and gauges in the Prometheus text format (``sglang_lsm_*``), including
        evictions, relocations, declined writes, hit/miss counts, write amplification and a
        histogram of segment live fractions."""
        return self._native.metrics_text()

    def flush(self) -> None:
        """Makes every page written so far durable on disk."""
        self._native.flush()

    def clear(self) -> None:
        """Removes every page in the store."""
        self._native.clear()

    def close(self) -> None:
        """Flushes and closes the store, releasing the directory. Calls in progress on other
        threads complete first; later calls raise :class:`StoreClosedError`. Idempotent.
        (A :class:`Client` drops its connections; the service's store stays open.)"""
        self._native.close()

    def __enter__(self) -> _PageCalls:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Store(_PageCalls):
    """An open store in one directory.

    Args:
        path: the store directory; created if missing. One process (one ``Store``) may have
            a directory open at a time; a second open raises :class:`StoreLockedError`.
        capacity_bytes: the most bytes of page data to keep. When full, the engine evicts
            old pages or declines new ones (``put_batch`` returns ``False`` for those).
            ``None`` uses the engine's default.
        **options: further engine settings, passed through unchanged; the engine rejects
            unknown names with :class:`InvalidArgumentError`. They include ``durability``
            (``"none"``, ``"batch"`` or ``"periodic"``), ``sync_interval_ms``, ``direct_write``, ``direct_read``,
            ``segment_bytes``, ``memtable_bytes`` and ``read_threads``.

    The store is a context manager: leaving the ``with`` block closes it.
    """

    def __init__(self, path: Any, capacity_bytes: int | None = None, **options: Any):
        config = dict(options)
        if capacity_bytes is not None:
            config["capacity_bytes"] = capacity_bytes
        try:
            config_json = json.dumps(config)
        except (TypeError, ValueError) as e:
            raise InvalidArgumentError(f"store options must be JSON values: {e}") from e
        self._native = _native.Store(str(path), config_json)

    @property
    def path(self) -> str:
        """The store directory."""
        return self._native.path

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._native.closed

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<sglang_lsm.Store {self.path!r} ({state})>"


# A call may wait at most a day; a client uses at most this many connections (each maps an
# arena of the service's --arena-mib).
_MAX_TIMEOUT_MS = 86_400_000
_MAX_CONNECTIONS = 64


class Client(_PageCalls):
    """A client of a node service (``sglang-lsm serve``), with the calls and results of
    :class:`Store`.

    Many processes on a node (TP ranks, DP replicas, prefill and decode workers, servers of
    other models) share one store through the service: pages one process writes, every other
    one reads, under the service's one capacity bound. Page bytes never cross the socket:
    they move through shared memory the service maps, one copy each way.

    Args:
        socket: the service's Unix socket (``sglang-lsm serve --socket``).
        timeout_ms: every wait of a call (connect, send, each reply; a large batch is
            several chunks) ends within this, or the call raises
            :class:`ServiceUnavailableError`: calls never hang on a dead or stopped service,
            and the next call reconnects by itself once the service is back.
        max_connections: connections kept for calls from several threads at once.
        connect: connect now, so a wrong path (:class:`ServiceUnavailableError`) or a refused
            uid or version (:class:`ServiceRefusedError`) fails here rather than at first use.

    Errors of the service's store arrive as the same classes an embedded store raises.
    """

    def __init__(
        self,
        socket: Any,
        timeout_ms: int = 10_000,
        max_connections: int = 4,
        connect: bool = True,
    ):
        for name, value, high in (
            ("timeout_ms", timeout_ms, _MAX_TIMEOUT_MS),
            ("max_connections", max_connections, _MAX_CONNECTIONS),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise InvalidArgumentError(
                    f"{name} must be an integer between 1 and {high}, got {value!r}"
                )
        self._native = _native.Client(str(socket), timeout_ms, max_connections, bool(connect))

    def connect(self) -> None:
        """Connects now (calls connect by themselves): raises
        :class:`ServiceUnavailableError` or :class:`ServiceRefusedError`."""
        self._native.connect()

    @property
    def socket(self) -> str:
        """The service's socket path."""
        return self._native.socket

    @property
    def path(self) -> str:
        """The service's socket path (where a :class:`Store` has its directory)."""
        return self._native.socket

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._native.closed

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<sglang_lsm.Client {self.socket!r} ({state})>"


# A follower that rescans less than daily serves a store frozen in time; the bound also keeps
# the value inside the engine's u64 (a bare OverflowError otherwise).
_MAX_REFRESH_INTERVAL_MS = 86_400_000


class Follower:
    """A read-only view of a store that another process writes.

    SGLang lets one rank write an MLA model's (replicated) KV cache to storage and every rank
    prefetch from it. A store directory belongs to one process, so the other ranks follow the
    writer's directory instead: the follower tails the store's value log into an in-memory
    map, takes no lock and writes nothing. Reads are checksummed like the store's; a page the
    follower has not seen yet, or that the writer has since moved or evicted, is a miss.

    Args:
        path: the followed store's directory. It may not exist yet (the writer may start
            later); the follower is empty until it does.
        refresh_interval_ms: calls rescan the log at most this often, which bounds how far
            the follower lags the writer (default 50 ms; 0 rescans on every call).
    """

    def __init__(self, path: Any, refresh_interval_ms: int = 50):
        if isinstance(refresh_interval_ms, bool) or not isinstance(refresh_interval_ms, int):
            raise InvalidArgumentError(
                f"refresh_interval_ms must be an integer, got {refresh_interval_ms!r}"
            )
        if not 0 <= refresh_interval_ms <= _MAX_REFRESH_INTERVAL_MS:
            raise InvalidArgumentError(
                f"refresh_interval_ms must be between 0 and {_MAX_REFRESH_INTERVAL_MS} "
                f"(one day), got {refresh_interval_ms}"
            )
        self._native = _native.Follower(str(path), refresh_interval_ms)

    @property
    def path(self) -> str:
        """The followed store directory."""
        return self._native.path

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._native.closed

    def get_batch(self, keys: Sequence[Key], buffers: Sequence[Any]) -> list[bool]:
        """As :meth:`Store.get_batch`."""
        return self._native.get_batch(keys, buffers)

    def get_batch_ptrs(
        self, keys: Sequence[Key], ptrs: Sequence[Any], sizes: Sequence[Any]
    ) -> list[bool]:
        """As :meth:`Store.get_batch_ptrs`."""
        return self._native.get_batch_ptrs(keys, ptrs, sizes)

    def get(self, key: Key) -> bytes | None:
        """As :meth:`Store.get`."""
        return self._native.get(key)

    def probe(self, keys: Sequence[Key], prefix_keys: Sequence[Key] | None = None) -> int:
        """The number of leading ``keys`` the follower knows of (``prefix_keys`` is accepted
        for symmetry with :meth:`Store.probe` and ignored)."""
        del prefix_keys
        return self._native.probe(keys)

    def exists(self, key: Key) -> bool:
        """Whether the follower knows of the page."""
        return self._native.exists(key)

    def exists_batch(self, keys: Sequence[Key]) -> list[bool]:
        """Whether the follower knows of each page, in one call."""
        return self._native.exists_batch(keys)

    def refresh(self) -> None:
        """Reads what the writer has logged since the last scan, now."""
        self._native.refresh()

    def stats(self) -> dict[str, Any]:
        """Follower counters: pages, segments, frames applied, refreshes, hits, misses."""
        return json.loads(self._native.stats_json())

    def metrics_text(self) -> str:
        """The counters in the Prometheus text format."""
        return self._native.metrics_text()

    def close(self) -> None:
        """Closes the follower; later calls raise :class:`StoreClosedError`. Idempotent."""
        self._native.close()

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<sglang_lsm.Follower {self.path!r} ({state})>"
