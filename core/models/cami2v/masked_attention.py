"""The epipolar mask, prepared once per video for the attention kernels.

A CamI2V video has one boolean mask per masked UNet level, (Bc, 1, L, R + L) with L = T*h*w
query tokens and R always-allowed register columns. Two costs made masked attention slow on CPU:

1. SDPA turns a boolean mask into an additive float mask on *every* call (0.4 s per call at
   20x32 on a 2-core CPU, ~50 s per 25-step video). `EpipolarMask` holds the additive form
   (0 where allowed, -inf elsewhere, exactly what SDPA builds) in the compute dtype, built once.
2. Every query scores every key although only 5-20 % of the pairs are allowed. The *gathered*
   form groups the queries of one frame into small spatial tiles (every tile of a video has the
   same shape; the shape whose tiles see the fewest keys is chosen per mask, since a sideways
   camera gives horizontal epipolar lines and a push-in radial ones) and lets each tile attend
   only the union of the keys its queries may see. The softmax over that subset equals the
   softmax over all keys with the others at -inf (they contribute exp(-inf) = 0), so the
   outputs agree with the dense form up to float summation order.

The gathered form pays a gather of keys/values per tile; it is used where that is estimated to
be cheaper than the dense scores (`GATHER_COST`, `GATHER_MAX_COST`): on CPU, with one mask
shared by the batch (both CFG branches), never under tracing (an exporter needs static shapes).
Everything else runs the dense additive mask. With GATHER_MAX_COST = 0.8, sideways, orbiting
and crane moves (straight epipolar lines, few keys per tile) would gather at 20x32 and 10x16;
push-ins, pans and static cameras, whose lines fan out, stay dense. It is 0: whole forwards were
no faster (see there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

# Tiles hold between these many queries (a th x tw block of cells of one frame, th | h, tw | w).
TILE_QUERIES = (32, 320)
# Cost of gathering one key/value element relative to one query's use of it, fitted to timings
# of both forms at 20x32 x 16 frames on a shared 2-core CPU (copying memory is slow there next
# to the SIMD matmuls). The gathered form costs density * (1 + GATHER_COST / tile_queries) of
# the dense one.
GATHER_COST = 180.0
# Use the gathered form only below this estimated share of the dense cost. 0: never chosen on
# its own (only with gather=True, or `CameraCondition.gather`). Per call at 20x32 it is faster
# (5.2 s against 8.7 s), but in whole forwards it gains nothing: bench/epipolar_attention.py,
# CamI2V-512 x 16 frames, orbit camera, 2-core CPU, nothing else running, warm runs: dense
# 109.6 s, gathered 109.7 s / 114.6 s (outputs within 3.4e-6). The first forward of a process
# cost about 27 s more (136.7 s, dense; allocation and page faults): a cold run on a shared
# machine is the likely reason an earlier paired run looked slower with it. So the dense additive
# mask stays the default; 0.8 is the value the cost model was fitted for.
GATHER_MAX_COST = 0.0
# Queries per batched SDPA call of the gathered form (bounds the gathered key/value memory).
GATHER_QUERIES_PER_CALL = 512


@dataclass(frozen=True)
class TileGroup:
    """Tiles attended together in one SDPA call, padded to the same number of keys.

    queries: (G*q,) token indices of the G tiles' queries, tile by tile.
    keys:    (G*S,) key indices (register columns first), S per tile, padding repeats key 0.
    bias:    (G, 1, q, S) additive mask in the compute dtype (-inf on padding).
    """

    queries: Tensor
    keys: Tensor
    bias: Tensor


def additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Boolean (True = may attend) -> 0 / -inf in `dtype`, as SDPA converts it."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def _tile_queries(frames: int, h: int, w: int, th: int, tw: int, device) -> Tensor:
    """(frames*h*w / (th*tw), th*tw) token indices, each row one th x tw tile of one frame."""
    idx = torch.arange(frames * h * w, device=device).view(frames, h // th, th, w // tw, tw)
    return idx.permute(0, 1, 3, 2, 4).reshape(-1, th * tw)


def _tile_unions(m: Tensor, frames: int, h: int, w: int, th: int, tw: int) -> Tensor:
    """(tiles, keys) bool: the keys any query of each th x tw tile may see (tiles in the order
    of `_tile_queries`), reduced over views of the mask without copying it."""
    keys = m.shape[-1]
    u = m.view(frames, h // th, th, w // tw, tw, keys).any(dim=4).any(dim=2)
    return u.reshape(-1, keys)


def tile_shapes(h: int, w: int, smallest: int = TILE_QUERIES[0]) -> list[tuple[int, int]]:
    """Tile shapes (th, tw) dividing an h x w grid with `smallest` to TILE_QUERIES[1] queries."""
    return [(th, tw) for th in range(1, h + 1) for tw in range(1, w + 1)
            if h % th == 0 and w % tw == 0 and smallest <= th * tw <= TILE_QUERIES[1]]


class EpipolarMask:
    """One level's epipolar mask in the form the attention runs; see the module docstring.

    Build with `EpipolarMask.prepare`; `attend(q, k, v, heads)` takes (B, L, inner) queries and
    (B, R + L, inner) keys/values and returns (B, L, inner).
    """

    def __init__(self, dense: Optional[Tensor], groups: Optional[list[TileGroup]], density: float):
        self.dense = dense  # (Bc, 1, L, R + L) additive, or None when gathered
        self.groups = groups
        self.density = density  # share of the (query, key) scores the chosen form computes

    @property
    def gathered(self) -> bool:
        return self.groups is not None

    @classmethod
    @torch.no_grad()
    def prepare(cls, mask: Tensor, frames: int, grid: tuple[int, int], dtype: torch.dtype,
                gather: Optional[bool] = None) -> "EpipolarMask":
        """mask: (Bc, 1, T*h*w, R + T*h*w) bool on the compute device; grid: (h, w) of the level.

        gather: None decides by the rules of the module docstring; True/False forces the form
        (True also allows tiles below TILE_QUERIES[0] queries, and still falls back to dense
        for Bc > 1).
        Under tracing (an exporter) the dense form is always used: its shapes are static.
        """
        h, w = grid
        if mask.dim() != 4 or mask.shape[2] != frames * h * w:
            raise ValueError(f"epipolar mask {tuple(mask.shape)} does not fit {frames} frames of {h}x{w}")
        auto = gather is None
        shapes = tile_shapes(h, w) if auto else tile_shapes(h, w, smallest=1)
        if auto:
            gather = mask.device.type == "cpu" and not torch.jit.is_tracing()
        if not gather or mask.shape[0] != 1 or not shapes:
            return cls(additive_mask(mask, dtype), None, 1.0)

        m = mask[0, 0]  # (L, R + L)
        best = None
        for th, tw in shapes:
            density = float(_tile_unions(m, frames, h, w, th, tw).float().mean())
            cost = density * (1.0 + GATHER_COST / (th * tw))
            if best is None or cost < best[0]:
                best = (cost, density, th, tw)
        cost, density, th, tw = best
        if cost > GATHER_MAX_COST and auto:
            return cls(additive_mask(mask, dtype), None, 1.0)
        tiles = _tile_queries(frames, h, w, th, tw, m.device)
        union = _tile_unions(m, frames, h, w, th, tw)

        # Tiles sorted by key count, so each padded group wastes little.
        counts = union.sum(dim=1)
        order = torch.argsort(counts, stable=True)
        per_tile = tiles.shape[1]
        group_tiles = max(1, GATHER_QUERIES_PER_CALL // per_tile)
        groups = []
        for start in range(0, len(order), group_tiles):
            sel = order[start:start + group_tiles]
            width = int(counts[sel].max())
            keys = torch.zeros(len(sel), width, dtype=torch.long, device=m.device)
            valid = torch.zeros(len(sel), width, dtype=torch.bool, device=m.device)
            for row, t in enumerate(sel.tolist()):
                cols = union[t].nonzero().squeeze(1)  # ascending: register columns first
                keys[row, :len(cols)] = cols
                valid[row, :len(cols)] = True
            queries = tiles[sel]  # (G, q)
            allowed = m[queries[:, :, None], keys[:, None, :]] & valid[:, None, :]  # (G, q, S)
            groups.append(TileGroup(queries.reshape(-1), keys.reshape(-1),
                                    additive_mask(allowed, dtype)[:, None]))
        return cls(None, groups, density)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
        """Masked multi-head attention: q (B, L, inner), k/v (B, R + L, inner) -> (B, L, inner)."""
        if not self.gathered:
            return _attend_dense(q, k, v, heads, self.dense)
        b, length, inner = q.shape
        d = inner // heads
        out = torch.empty_like(q)
        for g in self.groups:
            tiles, _, per_tile, width = g.bias.shape
            qg = q.index_select(1, g.queries).view(b * tiles, per_tile, heads, d).transpose(1, 2)
            kg = k.index_select(1, g.keys).view(b * tiles, width, heads, d).transpose(1, 2)
            vg = v.index_select(1, g.keys).view(b * tiles, width, heads, d).transpose(1, 2)
            bias = g.bias if b == 1 else g.bias.repeat(b, 1, 1, 1)
            og = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=bias)  # (b*G, heads, q, d)
            out.index_copy_(1, g.queries, og.transpose(1, 2).reshape(b, tiles * per_tile, inner))
        return out


def _attend_dense(q: Tensor, k: Tensor, v: Tensor, heads: int, bias: Tensor) -> Tensor:
    n, lq, inner = q.shape
    d = inner // heads
    out = F.scaled_dot_product_attention(q.view(n, lq, heads, d).transpose(1, 2),
                                         k.view(n, -1, heads, d).transpose(1, 2),
                                         v.view(n, -1, heads, d).transpose(1, 2), attn_mask=bias)
    return out.transpose(1, 2).reshape(n, lq, inner)
