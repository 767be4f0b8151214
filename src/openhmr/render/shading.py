"""Normals and Lambert shading with HMR's demo lights.

The original demo (OpenDR ``simple_renderer``) lit the mesh with three
Lambertian point lights at (−200, −100, −100), (800, 10, 300) and
(−500, 500, 1000), each rotated 120° about y, with colours 1, 1 and 0.7. The
lights are hundreds of metres away from a body a few metres from the camera,
so here they are directional: each shines from its position towards the
mesh centroid. All vectors are in the camera frame (x right, y down, z
forward, metres).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["HMR_LIGHT_COLORS", "HMR_LIGHT_POSITIONS", "face_normals", "lambert", "vertex_normals"]


def _rotate_y_like_hmr(points: list[list[float]], degrees: float) -> list[list[float]]:
    """HMR's ``_rotateY``: ``points @ R_y(angle)`` (a row-vector product)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    rot = [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
    return [[sum(p[i] * rot[i][j] for i in range(3)) for j in range(3)] for p in points]


HMR_LIGHT_POSITIONS: list[list[float]] = _rotate_y_like_hmr(
    [[-200.0, -100.0, -100.0], [800.0, 10.0, 300.0], [-500.0, 500.0, 1000.0]], 120.0
)
HMR_LIGHT_COLORS: list[float] = [1.0, 1.0, 0.7]


def face_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Unnormalised face normals (cross product, length = 2·area).

    Args:
        vertices: (B, V, 3). faces: (F, 3) long.
    Returns:
        (B, F, 3), oriented by the right-hand rule on the face's vertex order.
    """
    corner = vertices[:, faces]  # (B, F, 3, 3)
    return torch.linalg.cross(corner[:, :, 1] - corner[:, :, 0], corner[:, :, 2] - corner[:, :, 0], dim=-1)


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted unit vertex normals.

    Args:
        vertices: (B, V, 3). faces: (F, 3) long.
    Returns:
        (B, V, 3) unit normals (zero for vertices used by no face).
    """
    fn = face_normals(vertices, faces)
    b, v = vertices.shape[:2]
    # on the flattened (B·V, 3) rows: index_add_ along dim 1 takes a slow path
    offsets = (torch.arange(b, device=faces.device) * v)[:, None]
    normals = torch.zeros(b * v, 3, dtype=vertices.dtype, device=vertices.device)
    for k in range(3):
        normals.index_add_(0, (faces[:, k][None] + offsets).reshape(-1), fn.reshape(-1, 3))
    return torch.nn.functional.normalize(normals.reshape(b, v, 3), dim=-1, eps=1e-12)


def lambert(
    normals: Tensor,
    light_dirs: Tensor,
    light_colors: Tensor,
    albedo: Tensor,
    ambient: float,
) -> Tensor:
    """Lambertian shading ``albedo · (ambient + Σ_k colour_k · max(0, n·l_k))``, clipped to [0, 1].

    Args:
        normals: (N, 3) unit normals.
        light_dirs: (N, K, 3) or (K, 3) unit vectors from the surface towards each light.
        light_colors: (K,) light intensities.
        albedo: (3,) RGB surface colour in [0, 1].
        ambient: ambient intensity, so that parts facing away from every light are not black.
    Returns:
        (N, 3) RGB in [0, 1].
    """
    if light_dirs.ndim == 2:
        cosines = (normals @ light_dirs.T).clamp(min=0.0)  # (N, K)
    else:
        cosines = (normals[:, None, :] * light_dirs).sum(-1).clamp(min=0.0)
    intensity = ambient + (cosines * light_colors).sum(-1, keepdim=True)
    return (albedo * intensity).clamp(0.0, 1.0)
