"""Hard examples for ``fine_cnn`` from its own mistakes: the strongest Present cells of whole series.

Why: random and bright-pixel crops rarely hold the look-alikes that fool a half-trained detector
(a calcified choroid plexus or pineal gland, a vessel loop or crossing: isolated spheres and
blobs of a sac's size). Inspected on the default's validation split, the top-scoring cells of the
negative series were such look-alikes. So every ``mine_every`` epochs the model reads whole
training series (no TTA), and the ``mine_top`` strongest, mutually separated 3-D cells of each
series' Present evidence (``willis.models.fine.consensus_3d``) become crop centres for the next
epochs (``willis.train.fine_crops.draw``, with probability ``mine_frac`` for crops not aimed at a
sac). A mined cell on a true sac is harmless: every localizer inside a crop draws its target.

Cells: int64 (N, M, 3) (z, y, x) heat-map cells of the box, -1 rows pad (``mined_plan`` maps one
to a view's slab and pixel).
"""

from __future__ import annotations

import numpy as np
import torch

from willis.labels import PRESENT_INDEX
from willis.models.fine import STRIDE, FineModel, cell_slab, consensus_3d, series_inputs

SEPARATION = 3   # cells (2 mm each): two mined cells of a series are more than this apart on some axis


def peak_cells(volume: torch.Tensor, top: int) -> np.ndarray:
    """(h, h, h) evidence -> int64 (top, 3) cells, strongest first: greedy non-maximum suppression
    (take the largest cell, blank its (2 SEPARATION + 1)^3 neighbourhood, repeat); -1 rows when
    the volume runs out of cells."""
    v = volume.clone().float()
    out = np.full((top, 3), -1, dtype=np.int64)
    for j in range(top):
        flat = int(torch.argmax(v))
        cell = np.unravel_index(flat, v.shape)
        if not torch.isfinite(v[cell]):
            break
        out[j] = cell
        lo = [max(c - SEPARATION, 0) for c in cell]
        v[lo[0]:cell[0] + SEPARATION + 1, lo[1]:cell[1] + SEPARATION + 1, lo[2]:cell[2] + SEPARATION + 1] = -torch.inf
    return out


@torch.no_grad()
def mine_cells(model: FineModel, fine: np.ndarray, modality_id: np.ndarray, rows: np.ndarray,
               top: int) -> np.ndarray:
    """Series ``rows`` of ``fine`` (N, 3, K, C, F, F) uint8 -> int64 (N, top, 3) strongest Present
    cells of each, -1 for the series not in ``rows`` (one series in memory at a time)."""
    out = np.full((len(fine), top, 3), -1, dtype=np.int64)
    for r, x, ids in series_inputs(model, fine, modality_id, rows):
        maps = model.maps(x, ids)
        volume = consensus_3d(maps[:, :, :, PRESENT_INDEX:PRESENT_INDEX + 1].float())[0, 0]   # (h, h, h)
        out[r[0]] = peak_cells(volume, top)
    return out


def mined_plan(cell: np.ndarray, axis: int, n_slabs: int, h: int) -> tuple[int, float, float]:
    """One (z, y, x) cell -> (slab, row, col) in the ``axis`` view (pixel centres at integers).

    Axial images are (y, x), coronal (z, x), sagittal (z, y); the slab axis is z, y, x in turn
    (``consensus_3d``'s reading, inverted)."""
    z, y, x = (int(c) for c in cell)
    slab_cell, row_cell, col_cell = ((z, y, x), (y, z, x), (x, z, y))[axis]
    slab = int(cell_slab(h, n_slabs)[slab_cell])
    centre = (STRIDE - 1) / 2                      # a cell's centre in pixels, cells of STRIDE pixels
    return slab, row_cell * STRIDE + centre, col_cell * STRIDE + centre
