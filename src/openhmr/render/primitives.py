"""Small procedural meshes (unit spheres) for tests, benchmarks and markers.

Faces are wound counter-clockwise seen from outside (right-hand rule gives
outward normals).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["icosphere", "uv_sphere"]


def uv_sphere(n_lon: int = 84, n_lat: int = 83) -> tuple[Tensor, Tensor]:
    """Unit UV sphere with poles on ±z.

    The defaults give 6890 vertices and 13776 faces, the size of an SMPL body
    mesh: V = n_lon·(n_lat − 1) + 2 and F = 2·n_lon·(n_lat − 1).

    Returns:
        vertices (V, 3) float32 and faces (F, 3) int64.
    """
    if n_lon < 3 or n_lat < 2:
        raise ValueError(f"need n_lon >= 3 and n_lat >= 2, got {n_lon}, {n_lat}")
    theta = torch.arange(1, n_lat, dtype=torch.float64) * (math.pi / n_lat)  # polar angle of each ring
    phi = torch.arange(n_lon, dtype=torch.float64) * (2 * math.pi / n_lon)
    ring = torch.stack(
        [
            theta.sin()[:, None] * phi.cos()[None],
            theta.sin()[:, None] * phi.sin()[None],
            theta.cos()[:, None].expand(-1, n_lon),
        ],
        dim=-1,
    ).reshape(-1, 3)
    north = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    vertices = torch.cat([north, ring, -north]).float()

    j = torch.arange(n_lon)
    jn = (j + 1) % n_lon
    south = vertices.shape[0] - 1
    faces = [torch.stack([torch.zeros_like(j), 1 + j, 1 + jn], dim=1)]
    for i in range(n_lat - 2):
        a = 1 + i * n_lon + j  # ring i
        b = 1 + i * n_lon + jn
        c, d = a + n_lon, b + n_lon  # ring i + 1 (further from the north pole)
        faces += [torch.stack([a, c, b], dim=1), torch.stack([b, c, d], dim=1)]
    last = 1 + (n_lat - 2) * n_lon
    faces.append(torch.stack([last + j, torch.full_like(j, south), last + jn], dim=1))
    return vertices, torch.cat(faces).long()


def icosphere(subdivisions: int = 2) -> tuple[Tensor, Tensor]:
    """Unit icosphere: an icosahedron with each face split in 4, ``subdivisions`` times.

    Returns:
        vertices (10·4^s + 2, 3) float32 and faces (20·4^s, 3) int64.
    """
    t = (1.0 + math.sqrt(5.0)) / 2.0
    verts = [
        [-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0],
        [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
        [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1],
    ]
    faces = [
        [0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11],
        [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
        [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
        [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1],
    ]
    v = torch.nn.functional.normalize(torch.tensor(verts, dtype=torch.float64), dim=1)
    f = torch.tensor(faces)
    for _ in range(subdivisions):
        edges = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).sort(dim=1).values
        unique, inverse = torch.unique(edges, dim=0, return_inverse=True)
        mid = torch.nn.functional.normalize(v[unique[:, 0]] + v[unique[:, 1]], dim=1)
        m = inverse.view(3, -1) + v.shape[0]  # midpoint ids of edges 01, 12, 20
        v = torch.cat([v, mid])
        f = torch.cat([
            torch.stack([f[:, 0], m[0], m[2]], 1), torch.stack([f[:, 1], m[1], m[0]], 1),
            torch.stack([f[:, 2], m[2], m[1]], 1), torch.stack([m[0], m[1], m[2]], 1),
        ])
    return v.float(), f.long()
