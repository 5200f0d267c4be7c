"""The loss-landscape filter for "natural" backdoors.

Around the inverted v, an injected backdoor sits in a smooth convex bowl; a
natural trigger-like direction of a clean model sits on jagged ground with mixed
curvature. We evaluate L on a 2-D grid spanned by the descent direction and a
random orthogonal one, then take finite-difference Hessians at interior points.
"""

from __future__ import annotations

import numpy as np
import torch

from bot.detect.features import PromptBatch
from bot.detect.inversion import Objective
from bot.scan_record import Landscape


def _grid_losses(objective: Objective, v: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor,
                 axis: np.ndarray, batch: PromptBatch, *, points_per_chunk: int) -> np.ndarray:
    g = len(axis)
    a, b = np.meshgrid(axis, axis, indexing="ij")
    coords = torch.tensor(np.stack([a.ravel(), b.ravel()], 1), dtype=v.dtype, device=v.device)
    p = batch.x_suspect.shape[0]
    out = []
    for start in range(0, len(coords), points_per_chunk):
        c = coords[start:start + points_per_chunk]
        vs = v[None] + c[:, 0, None, None] * d1[None] + c[:, 1, None, None] * d2[None]  # [M,k,d]
        m = len(c)
        rows = torch.arange(p, device=v.device).repeat(m)
        rep = batch.select(rows)
        total = objective.terms(vs.repeat_interleave(p, 0), rep).total
        out.append(total.view(m, p).mean(1).float().cpu())
    return torch.cat(out).numpy().reshape(g, g)


def hessian_eigenvalues(loss: np.ndarray, spacing: float) -> np.ndarray:
    """Eigenvalues of the 2x2 finite-difference Hessian at every interior grid point."""
    f = loss
    faa = (f[2:, 1:-1] - 2 * f[1:-1, 1:-1] + f[:-2, 1:-1]) / spacing**2
    fbb = (f[1:-1, 2:] - 2 * f[1:-1, 1:-1] + f[1:-1, :-2]) / spacing**2
    fab = (f[2:, 2:] - f[2:, :-2] - f[:-2, 2:] + f[:-2, :-2]) / (4 * spacing**2)
    h = np.stack([np.stack([faa, fab], -1), np.stack([fab, fbb], -1)], -2)
    return np.linalg.eigvalsh(h).ravel()


def loss_landscape(objective: Objective, v: torch.Tensor, batch: PromptBatch, *, grid: int, radius: float,
                   generator: torch.Generator, points_per_chunk: int = 32) -> Landscape:
    # Finite-difference curvature subtracts nearly equal losses: in bf16 (8 bits of mantissa) the
    # differences drown in rounding, so the landscape runs in fp32 whatever autocast is active.
    with torch.autocast(device_type=v.device.type, enabled=False):
        return _landscape_fp32(objective, v.detach().float(), batch, grid=grid, radius=radius, generator=generator,
                               points_per_chunk=points_per_chunk)


def _landscape_fp32(objective: Objective, v: torch.Tensor, batch: PromptBatch, *, grid: int, radius: float,
                    generator: torch.Generator, points_per_chunk: int) -> Landscape:
    probe = v.clone().requires_grad_(True)
    objective.loss(probe, batch).backward()
    d1 = -probe.grad
    d1 = d1 / d1.norm().clamp(min=1e-12)
    d2 = torch.randn(v.shape, generator=generator).to(v.device)
    d2 = d2 - (d2 * d1).sum() * d1
    d2 = d2 / d2.norm().clamp(min=1e-12)
    axis = np.linspace(-radius, radius, grid)
    with torch.no_grad():
        loss = _grid_losses(objective, v, d1, d2, axis, batch, points_per_chunk=points_per_chunk)
    eig = hessian_eigenvalues(loss, float(axis[1] - axis[0]))
    ratio = float((eig > 1e-6).mean()) if eig.size else 0.0
    return Landscape(alphas=axis.tolist(), betas=axis.tolist(), loss=loss.tolist(),
                     hessian_eigenvalues=eig.tolist(), positive_ratio=ratio)
