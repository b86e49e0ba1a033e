"""A stand-in for SGLang's host KV pools (``MHATokenToKVPoolHost``, ``MLATokenToKVPoolHost``).

It owns a torch CPU buffer shaped like the real pool's ``kv_buffer`` and describes pages the
way sglang 0.5.23's ``get_page_buffer_meta`` does, pointer for pointer:

* MHA ``layer_first`` (buffer ``[2, layers, tokens, heads, dim]``): for each page, for each
  layer, the K pointer then the V pointer; each part is one layer's page of K or V.
* MHA ``page_first`` (``[2, tokens, layers, heads, dim]``) and ``page_first_direct``
  (``[2, pages, layers, page, heads, dim]``): for each page, K then V; each part holds all
  layers.
* MLA ``layer_first`` (``[layers, tokens, 1, dim]``): for each page, one pointer per layer.
* MLA ``page_first`` (``[tokens, layers, 1, dim]``) and ``page_first_direct``: one pointer
  per page.

``tests/test_sglang_real.py`` checks these offsets against the real classes when SGLang
imports. ``page_view`` gives the logical contents of a page independently of the pointer
arithmetic, so a test can tell whether bytes landed where they belong.
"""

from __future__ import annotations

import torch

MHA_LAYOUTS = ("layer_first", "page_first", "page_first_direct")
MLA_LAYOUTS = ("layer_first", "page_first", "page_first_direct")


class StandInMHAPool:
    """MHA host pool stand-in: K and V halves, ``layer_num`` layers."""

    def __init__(
        self,
        layout: str = "page_first",
        *,
        size: int = 256,
        page_size: int = 4,
        layer_num: int = 3,
        head_num: int = 2,
        head_dim: int = 8,
        dtype: torch.dtype = torch.bfloat16,
    ):
        if layout not in MHA_LAYOUTS:
            raise ValueError(layout)
        self.layout = layout
        self.size = size
        self.page_size = page_size
        self.page_num = size // page_size
        self.layer_num = layer_num
        self.head_num = head_num
        self.head_dim = head_dim
        self.v_head_dim = head_dim
        self.dtype = dtype
        self.size_per_token = 2 * layer_num * head_num * head_dim * dtype.itemsize
        if layout == "layer_first":
            dims = (2, layer_num, size, head_num, head_dim)
        elif layout == "page_first":
            dims = (2, size, layer_num, head_num, head_dim)
        else:
            dims = (2, self.page_num, layer_num, page_size, head_num, head_dim)
        self.kv_buffer = torch.zeros(dims, dtype=dtype)

    def get_page_buffer_meta(self, indices):
        assert len(indices) % self.page_size == 0
        starts = indices.tolist()[:: self.page_size]
        item = self.dtype.itemsize
        token_bytes = self.head_num * self.head_dim * item  # one token, one layer, K or V
        half = self.kv_buffer.numel() * item // 2  # distance from K to V
        base = self.kv_buffer.data_ptr()
        ptrs = []
        if self.layout == "layer_first":
            for start in starts:
                for layer in range(self.layer_num):
                    k = base + (layer * self.size + start) * token_bytes
                    ptrs += [k, k + half]
            part = self.page_size * token_bytes
        else:
            # page_first_direct stores page p at p * page_size tokens: same address.
            for start in starts:
                k = base + start * self.layer_num * token_bytes
                ptrs += [k, k + half]
            part = self.page_size * self.layer_num * token_bytes
        return ptrs, [part] * len(ptrs)

    def page_view(self, start: int) -> torch.Tensor:
        """The page beginning at token ``start``, as a fresh tensor (layout-specific shape)."""
        if self.layout == "layer_first":
            return self.kv_buffer[:, :, start : start + self.page_size].clone()
        if self.layout == "page_first":
            return self.kv_buffer[:, start : start + self.page_size].clone()
        return self.kv_buffer[:, start // self.page_size].clone()

    def part_order_bytes(self, start: int) -> bytes:
        """The page's bytes in get_page_buffer_meta part order (what a key stores)."""
        view = self.page_view(start)
        if self.layout == "layer_first":  # [2, L, P, H, D] -> per layer: K, V
            view = view.permute(1, 0, 2, 3, 4).contiguous()
        return view.flatten().view(torch.uint8).numpy().tobytes()

    def fill_page(self, start: int, generator: torch.Generator) -> None:
        values = torch.randn(self.page_view(start).shape, generator=generator).to(self.dtype)
        if self.layout == "layer_first":
            self.kv_buffer[:, :, start : start + self.page_size] = values
        elif self.layout == "page_first":
            self.kv_buffer[:, start : start + self.page_size] = values
        else:
            self.kv_buffer[:, start // self.page_size] = values


class StandInMLAPool:
    """MLA host pool stand-in: one latent row of ``kv_cache_dim`` per token and layer."""

    def __init__(
        self,
        layout: str = "page_first",
        *,
        size: int = 256,
        page_size: int = 4,
        layer_num: int = 3,
        kv_cache_dim: int = 12,
        dtype: torch.dtype = torch.bfloat16,
    ):
        if layout not in MLA_LAYOUTS:
            raise ValueError(layout)
        self.layout = layout
        self.size = size
        self.page_size = page_size
        self.page_num = size // page_size
        self.layer_num = layer_num
        self.kv_cache_dim = kv_cache_dim
        self.dtype = dtype
        self.size_per_token = layer_num * kv_cache_dim * dtype.itemsize
        if layout == "layer_first":
            dims = (layer_num, size, 1, kv_cache_dim)
        elif layout == "page_first":
            dims = (size, layer_num, 1, kv_cache_dim)
        else:
            dims = (self.page_num, layer_num, page_size, 1, kv_cache_dim)
        self.kv_buffer = torch.zeros(dims, dtype=dtype)

    def get_page_buffer_meta(self, indices):
        assert len(indices) % self.page_size == 0
        starts = indices.tolist()[:: self.page_size]
        row = self.kv_cache_dim * self.dtype.itemsize  # one token, one layer
        base = self.kv_buffer.data_ptr()
        ptrs = []
        if self.layout == "layer_first":
            for start in starts:
                ptrs += [
                    base + (layer * self.size + start) * row for layer in range(self.layer_num)
                ]
            part = self.page_size * row
        else:
            ptrs = [base + start * self.layer_num * row for start in starts]
            part = self.page_size * self.layer_num * row
        return ptrs, [part] * len(ptrs)

    def page_view(self, start: int) -> torch.Tensor:
        if self.layout == "layer_first":
            return self.kv_buffer[:, start : start + self.page_size].clone()
        if self.layout == "page_first":
            return self.kv_buffer[start : start + self.page_size].clone()
        return self.kv_buffer[start // self.page_size].clone()

    def part_order_bytes(self, start: int) -> bytes:
        """The page's bytes in get_page_buffer_meta part order (what a key stores)."""
        return self.page_view(start).flatten().view(torch.uint8).numpy().tobytes()

    def fill_page(self, start: int, generator: torch.Generator) -> None:
        values = torch.randn(self.page_view(start).shape, generator=generator).to(self.dtype)
        if self.layout == "layer_first":
            self.kv_buffer[:, start : start + self.page_size] = values
        elif self.layout == "page_first":
            self.kv_buffer[start : start + self.page_size] = values
        else:
            self.kv_buffer[start // self.page_size] = values


def page_indices(pages, page_size: int) -> torch.Tensor:
    """Host indices (token slots) covering the given page numbers, as SGLang passes them."""
    return torch.cat(
        [torch.arange(p * page_size, (p + 1) * page_size, dtype=torch.int64) for p in pages]
    )
