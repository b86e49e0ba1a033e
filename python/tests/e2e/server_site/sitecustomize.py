"""Stand-ins that let SGLang's HiCache run on a CPU-only machine, for the e2e test only.

This directory is put on ``PYTHONPATH`` of the SGLang server the test starts (never of the
test process, never of the package), so Python imports this module at startup in the server
and in every subprocess it spawns (scheduler, detokenizer). It patches two things of the
L1<->L2 side (device KV pool <-> host KV pool) and nothing else; the L2<->L3 side (HiCache
controller, its prefetch/backup threads, the storage backend factory, HiCacheLSM) is
SGLang's and ours, unchanged.

1. Host pool allocation. ``pool_host/common.py`` (``alloc_with_host_register``) allocates
   the host pool with its ``HostTensorAllocator`` and pins it with ``cudaHostRegister``
   (via ``torch.cuda.cudart()``), which needs an NVIDIA driver. Here the same allocator
   makes the buffer and the pinning is left out: the pool's memory, shape, dtype, layout
   and ``get_page_buffer_meta`` (what HiCacheLSM reads and writes through) are SGLang's.
2. Device<->host copies. ``MHATokenToKVPoolHost.load_to_device_per_layer`` and
   ``backup_from_device_all_layer`` call CUDA/HIP/XPU copy kernels (JIT or sgl_kernel's
   ``kvcacheio``); there is no CPU path (on CPU ``pool_host/mha.py`` does not even import
   those kernels, so a call fails with NameError). Here they are torch index copies between
   the device pool's per-layer K/V tensors and the host pool's per-layer views
   (``k_data_refs`` / ``v_data_refs``, which SGLang builds for page_first and layer_first).

The patches are applied when SGLang's module is first imported (a meta-path hook), so
importing this file costs nothing and does not change SGLang's import order.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

_TARGET = "sglang.srt.mem_cache.pool_host.mha"
# Layouts whose per-layer host views are indexed by token slot ([tokens, heads, dim]).
_TOKEN_INDEXED_LAYOUTS = ("page_first", "layer_first")


def _unpinned_host_alloc(
    dims, dtype, device, pin_memory, allocator, registration_granularity_bytes=None
):
    # Replaces alloc_with_host_register: SGLang's own allocator makes the buffer (an
    # anonymous mmap), but it is not page-locked, since cudaHostRegister needs a CUDA driver.
    del pin_memory, registration_granularity_bytes
    return allocator.allocate(dims, dtype=dtype, device=device)


def _check_layout(pool) -> None:
    if pool.layout not in _TOKEN_INDEXED_LAYOUTS:
        raise NotImplementedError(
            f"e2e host-pool stand-in supports {_TOKEN_INDEXED_LAYOUTS}, not {pool.layout!r}"
        )


def _load_to_device_per_layer(
    self, device_pool, host_indices, device_indices, layer_id, io_backend, *, is_draft=False
):
    # Replaces the H2D copy kernel for one layer (called once per layer as the forward
    # pass reaches it; SGLang's layer-done events still order it before attention).
    del device_pool, io_backend
    if not is_draft and not 0 <= layer_id < self.target_layer_num:
        return
    _check_layout(self)
    host_indices = host_indices.to(self.device_k_buffers[layer_id].device)
    device_indices = device_indices.to(self.device_k_buffers[layer_id].device)
    self.device_k_buffers[layer_id][device_indices] = self.k_data_refs[layer_id][host_indices]
    self.device_v_buffers[layer_id][device_indices] = self.v_data_refs[layer_id][host_indices]


def _backup_from_device_all_layer(self, device_pool, host_indices, device_indices, io_backend):
    # Replaces the D2H copy kernel over all layers (the write-through to the host pool).
    del device_pool, io_backend
    _check_layout(self)
    for layer in range(self.layer_num):
        self.k_data_refs[layer][host_indices] = self.device_k_buffers[layer][device_indices]
        self.v_data_refs[layer][host_indices] = self.device_v_buffers[layer][device_indices]


def _patch(module) -> None:
    from sglang.srt.mem_cache.pool_host import common

    common.ALLOC_MEMORY_FUNCS["cpu"] = _unpinned_host_alloc
    cls = module.MHATokenToKVPoolHost
    cls.load_to_device_per_layer = _load_to_device_per_layer
    cls.backup_from_device_all_layer = _backup_from_device_all_layer
    print(f"e2e stand-in: patched {_TARGET} (pid {os.getpid()})", file=sys.stderr, flush=True)


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner):
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        _patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _PatchingLoader(spec.loader)
        return spec


sys.meta_path.insert(0, _Finder())
