"""Batched similarity Procrustes alignment (rotation, isotropic scale, translation)."""

from __future__ import annotations

import torch
from torch import Tensor


def similarity_transform(source: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Least-squares similarity transform taking ``source`` onto ``target``.

    Finds s, R, t minimising Σ‖s·R·x_i + t − y_i‖² (Umeyama), with R a proper
    rotation (a reflection is never returned). This is HMR's
    ``compute_similarity_transform``: centre both sets, K = X1·X2ᵀ, SVD
    K = U S Vᵀ, R = V·diag(1, 1, sign det(U Vᵀ))·Uᵀ, s = trace(R K)/‖X1‖²,
    t = μ2 − s·R·μ1. A source whose points all coincide gets s = 0 (HMR's
    divides by zero there and gives NaN).

    Args:
        source, target: (B, N, 3) corresponding points.
    Returns:
        scale (B,), rotation (B, 3, 3), translation (B, 3).
    """
    mu1 = source.mean(dim=1, keepdim=True)
    mu2 = target.mean(dim=1, keepdim=True)
    x1 = (source - mu1).transpose(1, 2)  # (B, 3, N)
    x2 = (target - mu2).transpose(1, 2)
    var1 = (x1**2).sum(dim=(1, 2))
    k = x1 @ x2.transpose(1, 2)  # (B, 3, 3)
    u, _, vh = torch.linalg.svd(k)
    v = vh.transpose(1, 2)
    z = torch.eye(3, dtype=source.dtype, device=source.device).repeat(source.shape[0], 1, 1)
    z[:, -1, -1] = torch.sign(torch.linalg.det(u @ vh))
    rot = v @ z @ u.transpose(1, 2)
    # A source collapsed to one point (var1 = 0, so K = 0) is best matched by
    # scale 0, every point onto the target's centroid: a finite error, not 0/0.
    scale = torch.diagonal(rot @ k, dim1=1, dim2=2).sum(-1) / var1.clamp_min(torch.finfo(var1.dtype).tiny)
    trans = mu2.squeeze(1) - scale[:, None] * (rot @ mu1.transpose(1, 2)).squeeze(-1)
    return scale, rot, trans


def procrustes_align(source: Tensor, target: Tensor) -> Tensor:
    """``source`` (B, N, 3) aligned onto ``target`` by :func:`similarity_transform`."""
    scale, rot, trans = similarity_transform(source, target)
    return scale[:, None, None] * source @ rot.transpose(1, 2) + trans[:, None, :]
