"""CRM's implicit (LIIF-style) query decoder: the MLP ``imnet`` and two ways to run it.

* :func:`reference_decode`: the published decoding, literally (grid_sample on the 256-channel
  map, a 262-value MLP input per query and neighbour); :meth:`CRMNet.decode` calls it.
* :class:`QueryDecoder` with :class:`GridQueries`: the same numbers, computed faster: the
  feature part of the first MLP layer is applied once per feature pixel (a 1x1 conv
  256 -> 32), nearest-neighbour sampling is integer index arithmetic, and only the queries of
  one chunk exist at a time.

**Deliberate quirk (parity):** the four neighbour predictions are weighted by the *diagonally
opposite* neighbour's area (LIIF's local ensemble).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['EPS_SHIFT', 'FEAT_CHANNELS', 'GridQueries', 'ImplicitMLP', 'MLP_IN', 'QueryDecoder',
           'SHIFTS', 'grid_coords', 'make_coord', 'reference_decode']

#: Channels of the fused feature map F (and of the MLP's feature input).
FEAT_CHANNELS = 256
#: MLP input: feature (256) + relative position (2) + query coordinate (2) + cell (2).
MLP_IN = FEAT_CHANNELS + 6
#: Shift added to query coordinates before nearest-neighbour sampling (published value).
EPS_SHIFT = 1e-6
#: (vx, vy) neighbour shifts in the published order; prediction k is weighted by area 3 - k.
SHIFTS: Tuple[Tuple[int, int], ...] = ((-1, -1), (-1, 1), (1, -1), (1, 1))


def make_coord(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Pixel-centre coordinates of ``n`` pixels in [-1, 1]: ``-1 + (2i + 1) / n``, (n,) float32.

    Computed in float32 in the published order (``(v0 + r) + (2r) * i``) so that
    nearest-neighbour choices match the published code bit for bit.
    """
    r = 1.0 / n
    return (-1.0 + r) + (2.0 * r) * torch.arange(n, device=device, dtype=torch.float32)


def grid_coords(height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Query coordinates of every pixel of a ``height x width`` grid: (H*W, 2) float32, (y, x)."""
    ys, xs = make_coord(height, device), make_coord(width, device)
    return torch.stack(torch.meshgrid(ys, xs, indexing='ij'), dim=-1).reshape(-1, 2)


class ImplicitMLP(nn.Module):
    """``imnet``: Linear 262 -> 32 -> 32 -> 32 -> 32 -> 1 with ReLUs (names ``layers.0/2/4/6/8``)."""

    def __init__(self, in_dim: int = MLP_IN, hidden: int = 32, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(hidden, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def reference_decode(imnet: ImplicitMLP, feat: torch.Tensor, coord: torch.Tensor,
                     cell: torch.Tensor) -> torch.Tensor:
    """Published query decoding, literally (reference path; slow and memory-hungry).

    Args:
        imnet: the model's MLP.
        feat: (N, C, Hf, Wf) feature map (C = 256 published).
        coord: (N, Q, 2) query pixel centres in [-1, 1], (y, x) order.
        cell: (N, Q, 2) query cell size (2 / Ht, 2 / Wt) of the target grid.

    Returns:
        (N, Q, 1) logits (sigmoid gives the probability).
    """
    n, _, hf, wf = feat.shape
    rx, ry = 1.0 / hf, 1.0 / wf
    feat_coord = torch.stack(torch.meshgrid(make_coord(hf, feat.device),
                                            make_coord(wf, feat.device), indexing='ij'))
    feat_coord = feat_coord.unsqueeze(0).expand(n, 2, hf, wf).to(feat.dtype)
    rel_cell = cell * cell.new_tensor([hf, wf])
    preds, areas = [], []
    for vx, vy in SHIFTS:
        shifted = coord.clone()
        shifted[..., 0] += vx * rx + EPS_SHIFT
        shifted[..., 1] += vy * ry + EPS_SHIFT
        shifted.clamp_(-1 + 1e-6, 1 - 1e-6)
        grid = shifted.flip(-1).unsqueeze(1)
        q_feat = F.grid_sample(feat, grid, mode='nearest', align_corners=False)
        q_coord = F.grid_sample(feat_coord, grid, mode='nearest', align_corners=False)
        q_feat = q_feat[:, :, 0, :].permute(0, 2, 1)
        rel = (coord - q_coord[:, :, 0, :].permute(0, 2, 1)) * coord.new_tensor([hf, wf])
        inp = torch.cat([q_feat, rel, coord, rel_cell], dim=-1)
        preds.append(imnet(inp))
        areas.append((rel[..., 0] * rel[..., 1]).abs() + 1e-9)
    total = torch.stack(areas).sum(dim=0)
    out = 0
    for k, pred in enumerate(preds):
        out = out + pred * (areas[3 - k] / total).unsqueeze(-1)
    return out


class _AxisTerms(NamedTuple):
    """Per-coordinate decoding terms along one axis, for the two neighbour shifts (-1, +1)."""

    index: torch.Tensor  #: (2, n) int64, feature pixel index along the axis
    rel: torch.Tensor    #: (2, n) float32, (query - feature centre) * feature size
    pos: torch.Tensor    #: (2, n, 32) float32, first-layer terms W_r * rel + W_c * coord


def _nearest_index(c: torch.Tensor, shift: float, size: int) -> torch.Tensor:
    """Index of the feature pixel that nearest-neighbour grid_sample picks (align_corners=False).

    Replicates the published float32 arithmetic: shift, clamp to +-(1 - 1e-6), unnormalise as
    ``(c + 1) * (size / 2) - 0.5`` and round half to even.
    """
    c = (c + shift).clamp_(-1 + 1e-6, 1 - 1e-6)
    return c.add_(1).mul_(size / 2).sub_(0.5).round_().long().clamp_(0, size - 1)


def _axis_terms(c: torch.Tensor, size: int, w_rel: torch.Tensor,
                w_coord: torch.Tensor) -> _AxisTerms:
    centres = make_coord(size, c.device)
    index, rel, pos = [], [], []
    for v in (-1, 1):
        i = _nearest_index(c, v * (1.0 / size) + EPS_SHIFT, size)
        r = (c - centres[i]) * size
        index.append(i)
        rel.append(r)
        pos.append(r[:, None] * w_rel + c[:, None] * w_coord)
    return _AxisTerms(torch.stack(index), torch.stack(rel), torch.stack(pos))


def _first_layer(imnet: ImplicitMLP) -> Tuple[torch.Tensor, torch.Tensor, list]:
    layers = [m for m in imnet.layers if isinstance(m, nn.Linear)]
    hidden = [(m.weight.t().contiguous(), m.bias) for m in layers[1:]]
    return layers[0].weight, layers[0].bias, hidden


class GridQueries:
    """Decoding terms of every pixel of a target grid (Ht x Wt) on a feature map (Hf x Wf).

    Queries are the pixel centres of the grid with cell (2 / Ht, 2 / Wt), as the published
    inference builds them; everything that depends on one coordinate only is computed once
    per row / column (O(Ht + Wt) memory), never per pixel.
    """

    def __init__(self, imnet: ImplicitMLP, feat_size: Tuple[int, int],
                 target_size: Tuple[int, int], device: torch.device | str | None = None,
                 coords: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                 cell: Optional[torch.Tensor] = None) -> None:
        self.feat_size = (int(feat_size[0]), int(feat_size[1]))
        self.target_size = (int(target_size[0]), int(target_size[1]))
        hf, wf = self.feat_size
        ht, wt = self.target_size
        w0, _, _ = _first_layer(imnet)
        w_pos = w0[:, -6:].t().float()  # (6, 32): r_y r_x c_y c_x s_y s_x
        if coords is None:
            coords = (make_coord(ht, device), make_coord(wt, device))
        if cell is None:
            cell = torch.tensor([2.0 / ht, 2.0 / wt], dtype=torch.float32, device=device)
        rel_cell = cell.float() * cell.new_tensor([hf, wf], dtype=torch.float32)
        self.rows = _axis_terms(coords[0].float(), hf, w_pos[0], w_pos[2])
        cols = _axis_terms(coords[1].float(), wf, w_pos[1], w_pos[3])
        # the cell term is the same for every query: fold it into the column terms
        self.cols = cols._replace(pos=cols.pos + rel_cell @ w_pos[4:6])


class QueryDecoder:
    """Fast, chunk-friendly implementation of :meth:`CRMNet.decode` for one feature map.

    The first MLP layer ``W0 [feature, r, coord, cell] + b0`` is split: ``W0_f F + b0`` is a
    1x1 conv computed once per feature pixel (a table of 32 values per pixel, 8x smaller than
    F); the position terms are added per query from :class:`GridQueries`. Sampling uses
    integer indices computed with the published float32 arithmetic, so the same neighbours
    are chosen; results equal :meth:`CRMNet.decode` within float rounding (~1e-6).

    Memory: the table (h * w * 32 floats) plus, per call of Q queries, about
    ``Q * 4 * 32 * 2`` floats of temporaries (~1 KB per query in float32).

    Args:
        imnet: the model's MLP.
        feat: (1, 256, h, w), the feature pixels ``[r0, r0 + h) x [c0, c0 + w)`` of a map of
            ``feat_size`` (Hf, Wf); queries must only need feature pixels inside it.
        offset: (r0, c0).
    """

    def __init__(self, imnet: ImplicitMLP, feat: torch.Tensor, offset: Tuple[int, int] = (0, 0),
                 feat_size: Optional[Tuple[int, int]] = None) -> None:
        w0, b0, self.hidden = _first_layer(imnet)
        nf = w0.shape[1] - 6  # feature channels: 256 published (smaller variants: fewer)
        if feat.dim() != 4 or feat.shape[0] != 1 or feat.shape[1] != nf:
            raise ValueError(f'feat must be (1, {nf}, h, w), got {tuple(feat.shape)}')
        self.imnet = imnet
        self.region = (int(feat.shape[2]), int(feat.shape[3]))
        self.offset = (int(offset[0]), int(offset[1]))
        self.feat_size = tuple(int(v) for v in feat_size) if feat_size is not None \
            else self.region
        table = F.conv2d(feat, w0[:, :nf, None, None].to(feat.dtype),
                         b0.to(feat.dtype))
        self.table = table[0].flatten(1).t().contiguous()  # (h * w, 32)
        dt = self.table.dtype
        self.hidden = [(w.to(dt), b.to(dt)) for w, b in self.hidden]
        self._work: list = [self.table.new_empty(0), self.table.new_empty(0)]

    def _buffer(self, i: int, rows: int) -> torch.Tensor:
        """Reusable (rows, 32) work buffer ``i`` (grown on demand, never shrunk)."""
        if self._work[i].shape[0] < rows:
            self._work[i] = self.table.new_empty((rows, self.table.shape[1]))
        return self._work[i][:rows]

    def _check(self, grid: GridQueries) -> None:
        if grid.feat_size != self.feat_size:
            raise ValueError(f'grid terms are for a {grid.feat_size} feature map, the decoder '
                             f'holds one of {self.feat_size}')

    def block(self, grid: GridQueries, rows: Tuple[int, int],
              cols: Tuple[int, int]) -> torch.Tensor:
        """Logits of the target pixels ``[i0, i1) x [j0, j1)``: (i1 - i0) * (j1 - j0), row-major."""
        self._check(grid)
        (i0, i1), (j0, j1) = rows, cols
        r0, c0 = self.offset
        w = self.region[1]
        iy = (grid.rows.index[:, i0:i1] - r0) * w
        ix = grid.cols.index[:, j0:j1] - c0
        ni, nj = i1 - i0, j1 - j0
        n = ni * nj
        h = self._buffer(0, 4 * n).view(4, n, -1)
        areas = []
        for k, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            torch.index_select(self.table, 0, (iy[a][:, None] + ix[b][None, :]).view(-1),
                               out=h[k])
            hk = h[k].view(ni, nj, -1)
            hk += grid.rows.pos[a, i0:i1, None, :]
            hk += grid.cols.pos[b, None, j0:j1, :]
            areas.append((grid.rows.rel[a, i0:i1, None] * grid.cols.rel[b, None, j0:j1])
                         .abs_().add_(1e-9).view(-1))
        return self._mlp(h, areas)

    def pixels(self, grid: GridQueries, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Logits of the target pixels (rows[q], cols[q]): (Q,) for (Q,) int64 rows and cols."""
        self._check(grid)
        r0, c0 = self.offset
        w = self.region[1]
        n = rows.shape[0]
        h = self._buffer(0, 4 * n).view(4, n, -1)
        # per-axis terms gathered once per chunk, shared by the four neighbours
        iy = (grid.rows.index[:, rows] - r0) * w
        ix = grid.cols.index[:, cols] - c0
        ry, rx = grid.rows.rel[:, rows], grid.cols.rel[:, cols]
        py = grid.rows.pos.index_select(1, rows)
        px = grid.cols.pos.index_select(1, cols)
        areas = []
        for k, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            torch.index_select(self.table, 0, iy[a] + ix[b], out=h[k])
            h[k] += py[a]
            h[k] += px[b]
            areas.append((ry[a] * rx[b]).abs_().add_(1e-9))
        return self._mlp(h, areas)

    def __call__(self, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Logits of arbitrary queries (the fast equivalent of :meth:`CRMNet.decode`).

        Args:
            coord: (Q, 2) float32 pixel centres in [-1, 1], (y, x).
            cell: (2,) float32 cell size (2 / Ht, 2 / Wt), shared by all queries.

        Returns:
            (Q,) float32 logits.
        """
        if coord.dim() != 2 or coord.shape[1] != 2 or cell.numel() != 2:
            raise ValueError(f'coord must be (Q, 2) and cell (2,), got {tuple(coord.shape)} '
                             f'and {tuple(cell.shape)}')
        q = coord.shape[0]
        grid = GridQueries(self.imnet, self.feat_size, (q, q), coord.device,
                           coords=(coord[:, 0], coord[:, 1]), cell=cell.reshape(2))
        idx = torch.arange(q, device=coord.device)
        return self.pixels(grid, idx, idx)

    def _mlp(self, h: torch.Tensor, areas: list) -> torch.Tensor:
        """(4, n, 32) first-layer pre-activations + four (n,) areas -> (n,) logits."""
        n = h.shape[1]
        h = h.view(4 * n, -1).relu_()
        *inner, (w_out, b_out) = self.hidden
        for i, (w, bias) in enumerate(inner):
            h = torch.addmm(bias, h, w, out=self._buffer((i + 1) % 2, 4 * n)).relu_()
        pred = torch.addmm(b_out, h, w_out).view(4, n).float()
        total = areas[0] + areas[1] + areas[2] + areas[3]
        out = pred[0] * (areas[3] / total)
        for k in range(1, 4):
            out += pred[k] * (areas[3 - k] / total)
        return out
