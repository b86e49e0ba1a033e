"""Stand-in for the ``sgl_kernel`` package, for SGLang's CPU engine in the e2e test only.

Replaces: sgl-kernel's CPU build (``sgl_kernel`` with its C++ ops). sgl-kernel ships no CPU
wheel on PyPI, yet ``SGLANG_USE_CPU_ENGINE=1`` makes SGLang import its CPU ops at module
level. With ``--attention-backend torch_native`` on a CPU without AMX the only op the server
calls is ``assign_req_to_token_pool_cpu``; it is written here in torch. Every other name
imports (so SGLang's modules load) but raises if it is ever called, so a new code path that
needs a real kernel fails loudly instead of computing something wrong.
"""

from __future__ import annotations

import torch

__version__ = "0.0.0+sglang-lsm-e2e-standin"


def assign_req_to_token_pool_cpu(
    req_pool_indices: torch.Tensor,
    req_to_token: torch.Tensor,
    start_offset: torch.Tensor,
    end_offset: torch.Tensor,
    out_cache_loc: torch.Tensor,
    pool_len: int,
) -> None:
    """For each request ``i``: ``req_to_token[req_pool_indices[i], start[i]:end[i]]`` gets the
    next ``end[i] - start[i]`` slots of ``out_cache_loc`` (requests packed in order).

    Same signature as the C++ op (sglang/srt/mem_cache/allocation.py passes
    ``req_to_token.shape[1]`` as ``pool_len``, the row length, which torch indexing knows).
    """
    del pool_len
    pos = 0
    for i in range(int(req_pool_indices.numel())):
        start, end = int(start_offset[i]), int(end_offset[i])
        length = end - start
        row = int(req_pool_indices[i])
        req_to_token[row, start:end] = out_cache_loc[pos : pos + length].to(req_to_token.dtype)
        pos += length


def _missing(name: str):
    def op(*args, **kwargs):
        raise NotImplementedError(
            f"sgl_kernel.{name} is not available in the e2e stand-in (tests/e2e/server_site); "
            "only assign_req_to_token_pool_cpu is implemented"
        )

    op.__name__ = name
    return op


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return _missing(name)
