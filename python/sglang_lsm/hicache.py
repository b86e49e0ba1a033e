"""SGLang HiCache L3 (disk tier) backend built on :class:`sglang_lsm.Store`.

Enable it in SGLang with the dynamic backend loader::

    --hicache-storage-backend dynamic
    --hicache-storage-backend-extra-config '{"backend_name": "lsm",
        "module_path": "sglang_lsm.hicache", "class_name": "HiCacheLSM",
        "interface_v1": 1, "storage_dir": "/nvme/sglang-kv", "capacity_gb": 500}'

``interface_v1`` makes SGLang use the zero-copy calls (:meth:`HiCacheLSM.batch_get_v1` and
:meth:`HiCacheLSM.batch_set_v1`), which move pages straight between the host KV pool and the
engine. Without it SGLang falls back to the generic tensor calls, which copy each page once
more.

Options (all read from ``storage_config.extra_config``; SGLang passes nothing else):

``storage_dir`` (required unless ``server`` is set)
    Directory under which every rank keeps its store. Created if missing.
``server`` (optional)
    The socket of a node service (``sglang-lsm serve``, docs/SERVICE.md). Every rank of
    every instance on the node then shares its one store and capacity bound; store options
    (``storage_dir``, ``capacity_gb``, engine keys) belong to the service and are refused
    here. ``server_timeout_ms`` (default 10000) bounds each wait of a call; while the service
    is down, calls miss and reconnect by themselves. ``clear()`` is refused (it would wipe
    every instance's pages), and with ``metrics_port`` every rank exports the same service
    metrics: scrape one rank per node, not their sum.
``capacity_gb`` (optional)
    Disk budget in GB (10^9 bytes) for all the ranks of this deployment that share
    ``storage_dir``; each rank gets an equal share (see below). Without it the store is
    unbounded.
``namespace`` (optional)
    Any string mixed into the key namespace, to keep tenants apart that would otherwise
    share one (same model and geometry).
``metrics_port`` (optional)
    Serve Prometheus metrics of this rank's store at ``http://metrics_host:port/metrics``,
    with ``port = metrics_port + tp_rank`` so the ranks of one node do not collide.
``metrics_host`` (optional, default ``127.0.0.1``)
    Address the metrics exporter binds to.
``follower_refresh_ms`` (optional, default 50)
    MLA ranks that do not write (see below): how often they rescan the writer's log.
any other key
    Passed to the engine as a store option (``durability``, ``sync_interval_ms``,
    ``direct_write``, ``direct_read``, ``segment_bytes``, ``memtable_bytes``, ``read_threads``, ...). Unknown
    keys are rejected at startup with an error naming them. The keys SGLang itself consumes
    (``backend_name``, ``module_path``, ``class_name``, ``interface_v1``,
    ``prefetch_threshold``, ``prefetch_timeout_*``, ``hicache_storage_pass_prefix_keys``,
    ``tp_lcm_size``) are ignored here.

**Parallelism: one store per rank.** With tensor, pipeline or context parallelism every
rank is a separate process, and all of them are handed the same ``storage_dir``. A store
directory can be open in one process only, so each rank opens its own::

    storage_dir/<model>/tp{r}of{n}-pp{r}of{n}-cp{r}of{n}-dp{r}/

and gets ``capacity_gb / (tp_size * pp_size * cp_size)`` of the budget (MLA: see below).
Ranks hold disjoint shards of each page (heads, layers or tokens), so nothing is duplicated.
With DP attention SGLang does not tell a backend the number of DP groups: ``capacity_gb`` is
then the budget of one DP group, and the node uses up to ``capacity_gb`` times the number of
groups.

**MLA models.** SGLang replicates MLA KV on every TP rank and lets one rank per DCP shard
write it (``is_storage_writer``: the rank with ``tp_rank == dcp_rank``); every rank prefetches.
A writer rank opens its store as above. Every other rank opens a :class:`sglang_lsm.Follower`
of its writer's directory (``tp{dcp_rank}of{n}-...``): it tails the writer's value log, takes
no lock, writes nothing, and lags the writer by at most ``follower_refresh_ms`` (default 50);
a page it has not seen yet is a miss. The capacity is split among the writer ranks only
(``dcp_size * pp_size * cp_size``).

**Namespaces.** Every key is stored as ``<namespace>:<sglang key>``, where the namespace is a
digest of everything that decides the bytes of a page: model name, TP rank and size (not for
MLA, whose KV is replicated), PP and attention-CP rank and size, DCP shard, MLA or not, the
host pool's layout, dtype, page size, head geometry and page byte size, whether the zero-copy
or the generic interface wrote it, and the optional ``namespace`` option. Deployments that
differ in any of these never read each other's bytes; the DP rank is left out because DP
replicas hold identical pages. ``HiCacheLSM.namespace_info`` shows the inputs.

**Threads.** SGLang's prefetch and backup threads call in concurrently. The store is
thread-safe and releases the GIL during I/O; this class keeps no other shared state besides
metrics, which are guarded by a lock.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import threading
import time
from typing import Any, List, Optional, Sequence

from . import Client, Follower, Store
from .errors import InvalidArgumentError, ServiceUnavailableError, StoreError
from .exporter import MetricsExporter
from .hybrid import HybridCalls, page_regions

logger = logging.getLogger(__name__)

try:  # pragma: no cover - which branch runs depends on the environment
    from sglang.srt.mem_cache.hicache_storage import HiCacheStorage as _HiCacheBase

    SGLANG_AVAILABLE = True
except ImportError:  # sglang (or torch) is not installed: standalone class
    _HiCacheBase = object
    SGLANG_AVAILABLE = False

__all__ = ["HiCacheLSM", "LSMStorageMetrics", "SGLANG_AVAILABLE"]

# Keys of extra_config that SGLang consumes itself (or that name the backend).
_SGLANG_KEYS = frozenset(
    {
        "backend_name",
        "module_path",
        "class_name",
        "interface_v1",
        "prefetch_threshold",
        "prefetch_timeout_base",
        "prefetch_timeout_per_ki_token",
        "hicache_storage_pass_prefix_keys",
        "tp_lcm_size",
    }
)
# Keys this backend interprets; everything else goes to the engine.
_BACKEND_KEYS = (
    "storage_dir",
    "capacity_gb",
    "namespace",
    "metrics_port",
    "metrics_host",
    "follower_refresh_ms",
    "server",
    "server_timeout_ms",
)

# With "server", these are all the backend reads; store options belong to the service.
_SERVICE_KEYS = (
    "server",
    "server_timeout_ms",
    "namespace",
    "metrics_port",
    "metrics_host",
)

# A node service that is down is reported at most this often.
_UNAVAILABLE_LOG_INTERVAL_S = 10.0

# Version of the namespace recipe: bump it when the inputs or their encoding change.
_NAMESPACE_VERSION = 1


@dataclasses.dataclass
class LSMStorageMetrics:
    """Same fields as SGLang's ``StorageMetrics``; used when that class cannot be imported."""

    prefetch_pgs: List[int] = dataclasses.field(default_factory=list)
    backup_pgs: List[int] = dataclasses.field(default_factory=list)
    prefetch_bandwidth: List[float] = dataclasses.field(default_factory=list)
    backup_bandwidth: List[float] = dataclasses.field(default_factory=list)


def _metrics_class() -> type:
    try:
        from sglang.srt.observability.metrics_collector import StorageMetrics

        return StorageMetrics
    except Exception:  # noqa: BLE001 - any import failure means: use our own
        return LSMStorageMetrics


def _slug(text: str) -> str:
    """A directory-safe rendering of a model name that stays unique (short hash suffix)."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return f"{clean[:80]}-{digest}"


def _cfg(config: Any, name: str, default: Any) -> Any:
    value = getattr(config, name, default) if config is not None else default
    return default if value is None else value


class HiCacheLSM(HybridCalls, _HiCacheBase):  # type: ignore[misc, valid-type]
    """SGLang ``HiCacheStorage`` backend storing KV pages in an sglang-lsm store.

    Args:
        storage_config: SGLang's ``HiCacheStorageConfig`` (``None`` for standalone use, which
            behaves as a single rank). Options come from its ``extra_config``.
        kwargs: the factory's extra arguments (an empty dict in SGLang); any entries are read
            as options too.

    Raises:
        InvalidArgumentError: a missing ``storage_dir``, a bad or unknown option.
        StoreError: the store cannot be opened (for example, locked by another process).
    """

    def __init__(self, storage_config: Any = None, kwargs: Optional[dict] = None):
        self.storage_config = storage_config
        options = dict(_cfg(storage_config, "extra_config", {}) or {})
        options.update(kwargs or {})

        self.tp_rank = int(_cfg(storage_config, "tp_rank", 0))
        self.tp_size = int(_cfg(storage_config, "tp_size", 1))
        self.pp_rank = int(_cfg(storage_config, "pp_rank", 0))
        self.pp_size = int(_cfg(storage_config, "pp_size", 1))
        self.cp_rank = int(_cfg(storage_config, "attn_cp_rank", 0))
        self.cp_size = int(_cfg(storage_config, "attn_cp_size", 1))
        self.dp_rank = int(_cfg(storage_config, "dp_rank", 0))
        self.dcp_rank = int(_cfg(storage_config, "dcp_rank", 0))
        self.dcp_size = int(_cfg(storage_config, "dcp_size", 1))
        self.is_mla = bool(_cfg(storage_config, "is_mla_model", False))
        self.model_name = str(_cfg(storage_config, "model_name", ""))
        self.enable_metrics = bool(_cfg(storage_config, "enable_storage_metrics", False))
        self.interface_v1 = bool(options.get("interface_v1", 0))

        # SGLang's rule (HiCacheStorageConfig.is_storage_writer): MLA replicas share one
        # writer per DCP shard, the rank of the first DCP group; every other rank only reads.
        self.is_writer = not self.is_mla or self.tp_rank == self.dcp_rank
        writer_tp_rank = self.tp_rank if self.is_writer else self.dcp_rank

        server = options.get("server")
        self.server: Optional[str] = server
        if server is not None:
            capacity_bytes = self._connect_service(server, options)
        else:
            capacity_bytes = self._open_embedded(options, writer_tp_rank)
        self.capacity_bytes = capacity_bytes
        self.metrics_exporter: Optional[MetricsExporter] = None
        # From here on the store holds its directory LOCK: any failure must release it, or a
        # retry in the same process (or SGLang's restart of this rank) finds the store locked.
        try:
            self._finish_init(options, capacity_bytes)
        except BaseException:
            self._close_after_failure()
            raise

    def _connect_service(self, server: Any, options: dict) -> None:
        """``"server"``: every rank of every instance uses the node's service and its one
        capacity bound, so the store's options belong to the service, not here."""
        if not isinstance(server, str) or not server:
            raise InvalidArgumentError(
                f'HiCacheLSM: "server" must be the node service\'s socket path, got {server!r}'
            )
        misplaced = sorted(
            k
            for k in options
            if k not in _SGLANG_KEYS and k not in _SERVICE_KEYS
        )
        if misplaced:
            raise InvalidArgumentError(
                f"HiCacheLSM: with \"server\" the store belongs to the node service; set "
                f"{', '.join(misplaced)} there (`sglang-lsm serve --capacity ... --config "
                f"FILE.json`), not in extra_config"
            )
        timeout_ms = options.get("server_timeout_ms", 10_000)
        self.user_namespace = self._namespace_option(options)
        self.store_path = server
        self.store = Client(server, timeout_ms=timeout_ms, connect=False)
        try:
            self.store.connect()
        except ServiceUnavailableError as e:
            # SGLang may start before the service; calls miss until it is up, then reconnect.
            logger.warning("HiCacheLSM: %s; serving misses until it is up", e)
        except BaseException:
            self.store.close()
            raise
        return None

    def _open_embedded(self, options: dict, writer_tp_rank: int) -> Optional[int]:
        """Without ``"server"``: this rank's own store under ``storage_dir`` (an MLA reader
        rank follows its writer's)."""
        storage_dir = options.get("storage_dir")
        if not isinstance(storage_dir, str) or not storage_dir:
            raise InvalidArgumentError(
                'HiCacheLSM: extra_config must set "storage_dir" to a directory path, e.g. '
                '{"storage_dir": "/nvme/sglang-kv"}'
            )
        if "capacity_bytes" in options:
            raise InvalidArgumentError(
                'HiCacheLSM: use "capacity_gb" (the budget of all ranks together) instead of '
                '"capacity_bytes" in extra_config'
            )
        # Ranks that store pages share the budget; MLA followers store nothing.
        writer_tp = self.dcp_size if self.is_mla else self.tp_size
        self.ranks_sharing_dir = writer_tp * self.pp_size * self.cp_size
        capacity_bytes = None
        capacity_gb = options.get("capacity_gb")
        if capacity_gb is not None:
            if isinstance(capacity_gb, bool) or not isinstance(capacity_gb, (int, float)):
                raise InvalidArgumentError(
                    f'HiCacheLSM: "capacity_gb" must be a number, got {capacity_gb!r}'
                )
            if not capacity_gb > 0:
                raise InvalidArgumentError(
                    f'HiCacheLSM: "capacity_gb" must be positive, got {capacity_gb!r}'
                )
            capacity_bytes = int(capacity_gb * 1e9) // self.ranks_sharing_dir
        self.user_namespace = self._namespace_option(options)
        engine_options = {
            k: v for k, v in options.items() if k not in _SGLANG_KEYS and k not in _BACKEND_KEYS
        }

        follower_refresh_ms = options.get("follower_refresh_ms", 50)
        if (
            isinstance(follower_refresh_ms, bool)
            or not isinstance(follower_refresh_ms, int)
            or follower_refresh_ms < 0
        ):
            raise InvalidArgumentError(
                'HiCacheLSM: "follower_refresh_ms" must be a non-negative integer, got '
                f"{follower_refresh_ms!r}"
            )

        rank_dir = (
            f"tp{writer_tp_rank}of{self.tp_size}-pp{self.pp_rank}of{self.pp_size}"
            f"-cp{self.cp_rank}of{self.cp_size}-dp{self.dp_rank}"
        )
        self.store_path = os.path.join(storage_dir, _slug(self.model_name or "model"), rank_dir)
        self.store: Any
        if self.is_writer:
            try:
                os.makedirs(self.store_path, exist_ok=True)
            except OSError as e:
                raise StoreError(f"HiCacheLSM: cannot create {self.store_path}: {e}") from e
            try:
                self.store = Store(self.store_path, capacity_bytes=capacity_bytes, **engine_options)
            except InvalidArgumentError as e:
                raise InvalidArgumentError(
                    f"HiCacheLSM: bad extra_config ({e}). Backend options are "
                    f"{', '.join(_BACKEND_KEYS)}; other keys are engine store options."
                ) from e
        else:
            # The writer rank's store, read through its log; engine options are the writer's.
            self.store = Follower(self.store_path, refresh_interval_ms=follower_refresh_ms)
        return capacity_bytes

    @staticmethod
    def _namespace_option(options: dict) -> str:
        user_namespace = options.get("namespace")
        if user_namespace is not None and not isinstance(user_namespace, str):
            raise InvalidArgumentError(
                f'HiCacheLSM: "namespace" must be a string, got {user_namespace!r}'
            )
        return user_namespace or ""

    def _finish_init(self, options: dict, capacity_bytes: Optional[int]) -> None:
        """Everything after the store opened: metrics exporter, namespaces, the log line."""
        metrics_port = options.get("metrics_port")
        if metrics_port is not None:
            if isinstance(metrics_port, bool) or not isinstance(metrics_port, int) or not (
                0 <= metrics_port <= 65535
            ):
                raise InvalidArgumentError(
                    f'HiCacheLSM: "metrics_port" must be a port number, got {metrics_port!r}'
                )
            host = str(options.get("metrics_host", "127.0.0.1"))
            port = metrics_port + self.tp_rank if metrics_port else 0
            try:
                self.metrics_exporter = MetricsExporter(self.store.metrics_text, host, port)
            except OSError as e:
                raise StoreError(
                    f"HiCacheLSM: cannot serve metrics on {host}:{port}: {e}; choose another "
                    '"metrics_port" or remove it'
                ) from e
            logger.info(
                "HiCacheLSM: Prometheus metrics at http://%s:%d/metrics",
                host,
                self.metrics_exporter.port,
            )

        self.mem_pool_host: Any = None
        self._unavailable_logged_at = -float("inf")
        self._page_tokens = 1
        self._metrics_lock = threading.Lock()
        self._metrics = LSMStorageMetrics()
        self._metrics_cls: Optional[type] = None
        self._hybrid_init()
        self._set_namespaces(pool=None)
        logger.info(
            "HiCacheLSM: rank %s %s (capacity %s), interface_v1=%s",
            "store at" if self.is_writer else "follows the MLA writer's store at",
            self.store_path,
            "unbounded" if capacity_bytes is None else f"{capacity_bytes} bytes",
            self.interface_v1,
        )

    def _close_after_failure(self) -> None:
        """Releases the store (and exporter) of a backend that failed to start."""
        try:
            self.close()
        except Exception:  # noqa: BLE001 - the original error is the one to report
            logger.exception("HiCacheLSM: closing the store after a failed start failed")

    # ------------------------------------------------------------------ setup

    def _set_namespaces(self, pool: Any) -> None:
        info: dict[str, Any] = {
            "version": _NAMESPACE_VERSION,
            "model": self.model_name,
            "mla": self.is_mla,
            "pp": [self.pp_rank, self.pp_size],
            "cp": [self.cp_rank, self.cp_size],
            "user": self.user_namespace,
        }
        if not self.is_mla:
            info["tp"] = [self.tp_rank, self.tp_size]
        if self.dcp_size > 1:
            info["dcp"] = [
                self.dcp_rank,
                self.dcp_size,
                _cfg(self.storage_config, "logical_page_size", None),
            ]
        if pool is not None:
            info["pool"] = {
                "class": type(pool).__name__,
                "layout": str(getattr(pool, "layout", "")),
                "dtype": str(getattr(pool, "dtype", "")),
                "page_size": getattr(pool, "page_size", None),
                "layer_num": getattr(pool, "layer_num", None),
                "head_num": getattr(pool, "head_num", None),
                "head_dim": getattr(pool, "head_dim", None),
                "v_head_dim": getattr(pool, "v_head_dim", None),
                "kv_cache_dim": getattr(pool, "kv_cache_dim", None),
                "size_per_token": getattr(pool, "size_per_token", None),
                "format_tag": getattr(pool, "storage_format_tag", None),
            }
        self.namespace_info = info
        self._prefix_v1 = self._digest({**info, "interface": "v1"}) + ":"
        self._prefix_generic = self._digest({**info, "interface": "generic"}) + ":"

    @staticmethod
    def _digest(info: dict) -> str:
        canonical = json.dumps(info, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def register_mem_pool_host(self, mem_pool_host: Any) -> None:
        """Registers SGLang's host KV pool: the memory that the zero-copy calls read and write.

        Fixes the key namespace (layout, dtype and geometry come from the pool) and, with
        ``interface_v1``, checks once that the pool can describe its pages, so an unsupported
        pool fails at startup rather than on every transfer.
        """
        try:
            self._register(mem_pool_host)
        except BaseException:
            # SGLang aborts startup on this error; release the LOCK now, not at garbage
            # collection, so the restarted rank can open the store.
            self._close_after_failure()
            raise

    def _register(self, mem_pool_host: Any) -> None:
        self.mem_pool_host = mem_pool_host
        self._page_tokens = int(
            getattr(mem_pool_host, "logical_page_size", None)
            or getattr(mem_pool_host, "page_size", 1)
            or 1
        )
        self._set_namespaces(mem_pool_host)
        if self.interface_v1:
            self._check_pool_meta(mem_pool_host)
        self._set_pool_prefixes()
        logger.info(
            "HiCacheLSM: namespace %s %s",
            self._prefix_v1 if self.interface_v1 else self._prefix_generic,
            json.dumps(self.namespace_info, sort_keys=True, default=str),
        )

    def _check_pool_meta(self, pool: Any) -> None:
        try:
            import torch

            indices = torch.arange(self._page_tokens, dtype=torch.int64)
            ptrs, sizes = pool.get_page_buffer_meta(indices)
        except Exception as e:
            raise InvalidArgumentError(
                f"HiCacheLSM: host pool {type(pool).__name__} (layout "
                f"{getattr(pool, 'layout', '?')!r}) cannot describe its pages for zero-copy "
                f"I/O ({e}); use a supported layout or drop interface_v1"
            ) from e
        if not ptrs or len(ptrs) != len(sizes):
            raise InvalidArgumentError(
                f"HiCacheLSM: host pool {type(pool).__name__} returned {len(ptrs)} pointers "
                f"and {len(sizes)} sizes for one page"
            )
        self.namespace_info["page_parts"] = [int(s) for s in sizes]
        self._prefix_v1 = self._digest({**self.namespace_info, "interface": "v1"}) + ":"

    # ------------------------------------------------------------------ helpers

    def _keys(self, keys: Sequence[str], prefix: str) -> List[str]:
        return [prefix + k for k in keys]

    def _prefix_keys(self, extra_info: Any, prefix: str) -> Optional[List[str]]:
        prefix_keys = getattr(extra_info, "prefix_keys", None) if extra_info is not None else None
        if not prefix_keys:
            return None
        return [prefix + k for k in prefix_keys]

    def _page_regions(self, n_pages: int, host_indices: Any) -> tuple[list, list]:
        """Splits the pool's flat pointer list into one list of parts per page.

        Every SGLang host pool lists its pointers page by page (page_first: K, V;
        layer_first: K, V for each layer; MLA page_first: one; MLA layer_first: one per
        layer), so the parts of page ``i`` are the ``i``-th run of ``len(ptrs) / n_pages``.
        """
        pool = self.mem_pool_host
        if pool is None:
            raise InvalidArgumentError(
                "HiCacheLSM: no host pool registered (register_mem_pool_host was not called)"
            )
        try:
            return page_regions(pool, self._page_tokens, n_pages, host_indices)
        except ValueError as e:
            raise InvalidArgumentError(f"HiCacheLSM: {e}") from e

    def _failed(self, error: BaseException, what: str, *args: Any) -> None:
        """Logs a failed call. A node service that is down fails every call until it is
        back; that is one warning per interval, not a traceback per call."""
        if isinstance(error, ServiceUnavailableError):
            now = time.monotonic()
            if now - self._unavailable_logged_at >= _UNAVAILABLE_LOG_INTERVAL_S:
                self._unavailable_logged_at = now
                logger.warning("HiCacheLSM: %s failed: %s", what % args, error)
            return
        logger.error("HiCacheLSM: %s failed", what % args, exc_info=error)

    def _record(self, kind: str, ok: Sequence[bool], sizes: list, seconds: float) -> None:
        if not self.enable_metrics:
            return
        pages = sum(1 for r in ok if r)
        moved = sum(sum(s) for s, r in zip(sizes, ok) if r)
        bandwidth = moved / seconds / 1e9 if seconds > 0 else 0.0
        with self._metrics_lock:
            if kind == "get":
                self._metrics.prefetch_pgs.append(pages)
                self._metrics.prefetch_bandwidth.append(bandwidth)
            else:
                self._metrics.backup_pgs.append(pages)
                self._metrics.backup_bandwidth.append(bandwidth)

    # ------------------------------------------------------------------ zero-copy (v1)

    def batch_exists(self, keys: List[str], extra_info: Any = None) -> int:
        """Number of leading ``keys`` that are stored, in one engine probe.

        ``extra_info.prefix_keys`` (the pages before ``keys[0]``) is passed along so the
        engine can find the pages by their prefix. Never raises: an error counts as 0 hits.
        """
        if not keys:
            return 0
        prefix = self._prefix_v1 if self.interface_v1 else self._prefix_generic
        try:
            return self.store.probe(self._keys(keys, prefix), self._prefix_keys(extra_info, prefix))
        except Exception as e:
            self._failed(e, "batch_exists of %d keys", len(keys))
            return 0

    def batch_get_v1(
        self, keys: List[str], host_indices: Any, extra_info: Any = None
    ) -> List[bool]:
        """Reads pages straight into the host pool at ``host_indices``.

        Returns one bool per key (SGLang uses the leading run of ``True``). Never returns
        ``None`` and never raises: errors are logged and reported as ``False``.
        """
        n = len(keys)
        if n == 0:
            return []
        try:
            ptrs, sizes = self._page_regions(n, host_indices)
            start = time.perf_counter()
            ok = self.store.get_batch_ptrs(self._keys(keys, self._prefix_v1), ptrs, sizes)
            self._record("get", ok, sizes, time.perf_counter() - start)
            return ok
        except Exception as e:
            self._failed(e, "batch_get_v1 of %d pages", n)
            return [False] * n

    def batch_set_v1(
        self, keys: List[str], host_indices: Any, extra_info: Any = None
    ) -> List[bool]:
        """Writes pages straight from the host pool at ``host_indices``.

        A key already stored counts as written. Returns one bool per key; never ``None``,
        never raises (errors are logged and reported as ``False``).
        """
        n = len(keys)
        if n == 0:
            return []
        if not self.is_writer:
            return [False] * n  # SGLang skips backup on MLA followers; nothing is stored
        try:
            ptrs, sizes = self._page_regions(n, host_indices)
            start = time.perf_counter()
            ok = self.store.put_batch_ptrs(
                self._keys(keys, self._prefix_v1),
                ptrs,
                sizes,
                self._prefix_keys(extra_info, self._prefix_v1),
            )
            self._record("set", ok, sizes, time.perf_counter() - start)
            return ok
        except Exception as e:
            self._failed(e, "batch_set_v1 of %d pages", n)
            return [False] * n

    # ------------------------------------------------------------------ generic tensors

    @staticmethod
    def _tensor_region(tensor: Any, writable: bool) -> tuple[int, int]:
        device = getattr(getattr(tensor, "device", None), "type", "cpu")
        if device != "cpu":
            raise InvalidArgumentError(f"HiCacheLSM: tensor is on {device}, not host memory")
        if writable and not tensor.is_contiguous():
            raise InvalidArgumentError("HiCacheLSM: target tensor is not contiguous")
        return int(tensor.data_ptr()), int(tensor.numel() * tensor.element_size())

    def get(self, key: str, target_location: Any = None, target_sizes: Any = None) -> Any:
        """Reads one page into the contiguous CPU tensor ``target_location`` and returns it,
        or ``None`` on a miss or error. Without a target, returns a new uint8 tensor."""
        targets = None if target_location is None else [target_location]
        return self.batch_get([key], targets)[0]

    def batch_get(
        self, keys: List[str], target_locations: Any = None, target_sizes: Any = None
    ) -> List[Any]:
        """Reads pages into the given tensors (one per key); ``None`` marks a miss.

        Never raises: errors are logged and reported as misses.
        """
        n = len(keys)
        if n == 0:
            return []
        names = self._keys(keys, self._prefix_generic)
        try:
            if target_locations is None:
                import torch

                out: List[Any] = []
                for name in names:
                    data = self.store.get(name)
                    out.append(
                        None
                        if data is None
                        else torch.frombuffer(bytearray(data), dtype=torch.uint8)
                    )
                return out
            if len(target_locations) != n:
                raise InvalidArgumentError(
                    f"HiCacheLSM: {n} keys but {len(target_locations)} target tensors"
                )
            regions = [self._tensor_region(t, writable=True) for t in target_locations]
            ptrs = [[p] for p, _ in regions]
            sizes = [[s] for _, s in regions]
            start = time.perf_counter()
            ok = self.store.get_batch_ptrs(names, ptrs, sizes)
            self._record("get", ok, sizes, time.perf_counter() - start)
            return [t if hit else None for t, hit in zip(target_locations, ok)]
        except Exception as e:
            self._failed(e, "batch_get of %d pages", n)
            return [None] * n

    def set(
        self,
        key: str,
        value: Any = None,
        target_location: Any = None,
        target_sizes: Any = None,
    ) -> bool:
        """Stores one CPU tensor's bytes under ``key``; ``False`` on failure."""
        return self.batch_set([key], [value])

    def batch_set(
        self,
        keys: List[str],
        values: Any = None,
        target_locations: Any = None,
        target_sizes: Any = None,
    ) -> bool:
        """Stores one CPU tensor per key. Returns whether every page was stored; never
        raises (errors are logged and reported as ``False``)."""
        n = len(keys)
        if n == 0:
            return True
        if not self.is_writer:
            return False  # SGLang skips backup on MLA followers; nothing is stored
        try:
            if values is None or len(values) != n:
                raise InvalidArgumentError(
                    f"HiCacheLSM: {n} keys but {0 if values is None else len(values)} values"
                )
            # Non-contiguous views are copied once; the list keeps the copies alive.
            tensors = [v if v.is_contiguous() else v.contiguous() for v in values]
            regions = [self._tensor_region(t, writable=False) for t in tensors]
            ptrs = [[p] for p, _ in regions]
            sizes = [[s] for _, s in regions]
            start = time.perf_counter()
            ok = self.store.put_batch_ptrs(self._keys(keys, self._prefix_generic), ptrs, sizes)
            self._record("set", ok, sizes, time.perf_counter() - start)
            return all(ok)
        except Exception as e:
            self._failed(e, "batch_set of %d pages", n)
            return False

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored (under the namespace of the interface in use)."""
        prefix = self._prefix_v1 if self.interface_v1 else self._prefix_generic
        try:
            return self.store.exists(prefix + key)
        except Exception as e:
            self._failed(e, "exists")
            return False

    # ------------------------------------------------------------------ management

    def clear(self) -> bool:
        """Removes every page of this rank's store. Returns whether it succeeded. An MLA
        follower stores nothing: it returns ``True`` and sees the writer's clear in its log.

        With ``"server"`` the store is the whole node's (every model, replica and rank), so
        one instance's clear must not wipe the others: nothing is removed, a warning is
        logged, and the result is ``False``. Clear the node's store by restarting the service
        on an empty ``--dir``."""
        if self.server is not None:
            logger.warning(
                "HiCacheLSM: clear() ignored: the node service at %s is shared by every "
                "instance on the node",
                self.server,
            )
            return False
        if not self.is_writer:
            return True
        try:
            self.store.clear()
            return True
        except Exception as e:
            self._failed(e, "clear")
            return False

    def get_stats(self) -> Any:
        """Transfer metrics since the previous call, as SGLang's ``StorageMetrics`` (or
        :class:`LSMStorageMetrics` when SGLang is absent). Empty unless SGLang enabled
        storage metrics."""
        if self._metrics_cls is None:
            self._metrics_cls = _metrics_class()
        with self._metrics_lock:
            taken, self._metrics = self._metrics, LSMStorageMetrics()
        out = self._metrics_cls()
        out.prefetch_pgs.extend(taken.prefetch_pgs)
        out.backup_pgs.extend(taken.backup_pgs)
        out.prefetch_bandwidth.extend(taken.prefetch_bandwidth)
        out.backup_bandwidth.extend(taken.backup_bandwidth)
        return out

    def engine_stats(self) -> dict:
        """The engine's own statistics for this rank's store (with ``"server"``: the node
        service's store, shared by every instance on the node)."""
        return self.store.stats()

    def close(self) -> None:
        """Flushes and closes this rank's store (and its metrics exporter); with ``"server"``,
        drops the connections and leaves the service's store open. Idempotent."""
        if self.metrics_exporter is not None:
            self.metrics_exporter.close()
            self.metrics_exporter = None
        self.store.close()
