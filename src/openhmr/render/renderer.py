"""Render a mesh given in the camera frame: projection, rasterisation, shading.

Frames and units: vertices are in the camera frame — x right, y down, z
forward (depth, positive in front of the camera), metres — which is how HMR
bodies come out (root rotated π about x). Pixels follow
``openhmr.render.rasterizer``: pixel (i, j) covers [j, j+1) × [i, i+1) and is
sampled at its centre, so a point projecting to u = f·x/z + cx lies in column
floor(u).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from openhmr.render.rasterizer import RESOLVE_CHUNK, Fragments, RenderError, rasterize
from openhmr.render.shading import HMR_LIGHT_COLORS, HMR_LIGHT_POSITIONS, face_normals, lambert, vertex_normals

__all__ = ["LIGHT_BLUE", "LIGHT_PINK", "RenderResult", "project_vertices", "render_mesh", "rotate_about_centroid"]

LIGHT_BLUE = (0.651, 0.741, 0.859)
LIGHT_PINK = (0.9, 0.7, 0.7)


@dataclass(frozen=True)
class RenderResult:
    """A rendered batch.

    Attributes:
        rgb: (B, H, W, 3) float in [0, 1], composited over the background.
        mask: (B, H, W) bool, True where the mesh covers the pixel centre.
        depth: (B, H, W) camera-frame depth in metres, ``inf`` off the mesh.
        fragments: the rasteriser's per-pixel face index and barycentrics.
    """

    rgb: Tensor
    mask: Tensor
    depth: Tensor
    fragments: Fragments

    @property
    def alpha(self) -> Tensor:
        """(B, H, W) float alpha (1 on the mesh, 0 elsewhere), e.g. for RGBA overlays."""
        return self.mask.to(self.rgb.dtype)


def _per_item(value: Tensor | float | Sequence[float], batch: int, width: int, like: Tensor, name: str) -> Tensor:
    """Broadcast a scalar/(width,)/(B, width) camera parameter to (B, width)."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.ndim == 0 or (t.ndim == 1 and t.shape[0] == width):
        return t.reshape(1, -1).expand(batch, width)
    if t.ndim == 1 and width == 1 and t.shape[0] == batch:
        return t[:, None]
    if t.ndim == 2 and t.shape == (batch, width):
        return t
    raise RenderError(f"{name} must be a scalar, ({width},) or ({batch}, {width}) for batch {batch}, got {tuple(t.shape)}")


def project_vertices(
    vertices: Tensor, focal: Tensor | float, principal_point: Tensor | Sequence[float], near: float = 1e-4
) -> Tensor:
    """Pinhole projection to the rasteriser's ``[u, v, z]``.

    Args:
        vertices: (B, V, 3) camera frame, metres.
        focal: scalar or (B,) focal length in pixels.
        principal_point: (2,) or (B, 2) pixels.
        near: vertices at z <= near get a finite dummy (u, v) (their
            triangles are skipped by the rasteriser anyway).
    Returns:
        (B, V, 3): u = f·x/z + cx, v = f·y/z + cy, and z unchanged.
    """
    batch = vertices.shape[0]
    f = _per_item(focal, batch, 1, vertices, "focal")[:, None, :]  # (B, 1, 1)
    c = _per_item(principal_point, batch, 2, vertices, "principal_point")[:, None, :]  # (B, 1, 2)
    z = vertices[..., 2:3]
    safe_z = torch.where(z > near, z, torch.ones_like(z))
    return torch.cat([f * vertices[..., :2] / safe_z + c, z], dim=-1)


def render_mesh(
    vertices: Tensor,
    faces: Tensor,
    focal: Tensor | float,
    principal_point: Tensor | Sequence[float] | None,
    height: int,
    width: int,
    color: Sequence[float] = LIGHT_BLUE,
    background: Tensor | None = None,
    *,
    ambient: float = 0.3,
    near: float = 1e-4,
    normals: Tensor | None = None,
) -> RenderResult:
    """Render a shaded mesh with a pinhole camera (software rasteriser).

    Shading is Lambertian with per-pixel normals interpolated from
    area-weighted vertex normals (smooth shading), lit by HMR's three demo
    lights as directional lights (``openhmr.render.shading``) plus an ambient
    term. Surfaces are two-sided: where a pixel shows a face's back (its
    winding turns away from the camera), the normal is flipped, so mirrored
    meshes and inner surfaces shade too; a front face keeps its smooth normal
    even where that leans away, at a silhouette.

    Args:
        vertices: (B, V, 3) or (V, 3) camera frame, metres (float16 and
            bfloat16 are rendered in float32).
        faces: (F, 3) integer vertex indices.
        focal: scalar or (B,) focal length in pixels.
        principal_point: (2,) or (B, 2) pixels; None = image centre (W/2, H/2).
        height, width: image size in pixels.
        color: RGB albedo in [0, 1] (HMR's light blue by default).
        background: (B, H, W, 3) or (H, W, 3) RGB in [0, 1]; None = white.
        ambient: ambient light intensity.
        near: triangles with a vertex at z <= near are not drawn.
        normals: (B, V, 3) or (V, 3) vertex normals to shade with, in place of
            the mesh's own: for a mesh re-expressed in another camera by a map
            that keeps its pixels but not its shape (a photo's people drawn
            through one camera), its normals in its own camera.

    Returns:
        ``RenderResult`` with rgb (B, H, W, 3), mask (B, H, W) and depth.

    Raises:
        RenderError: invalid shapes, non-finite vertices or camera, empty image size.
    """
    if not isinstance(vertices, Tensor) or vertices.ndim not in (2, 3) or vertices.shape[-1] != 3:
        shape = tuple(vertices.shape) if isinstance(vertices, Tensor) else type(vertices)
        raise RenderError(f"vertices must be a (B, V, 3) or (V, 3) tensor, got {shape}")
    if vertices.ndim == 2:
        vertices = vertices[None]
    if not vertices.is_floating_point() or vertices.dtype in (torch.float16, torch.bfloat16):
        # Half precision's ~3 digits bend the normals visibly (shading off by up to 0.3).
        vertices = vertices.float()
    if not bool(torch.isfinite(vertices).all()):
        raise RenderError("vertices contain NaN or infinite values")
    batch, device, dtype = vertices.shape[0], vertices.device, vertices.dtype
    if principal_point is None:
        principal_point = (width / 2.0, height / 2.0)
    for name, value in (("focal", focal), ("principal_point", principal_point)):
        if not bool(torch.isfinite(torch.as_tensor(value, dtype=torch.float64)).all()):
            raise RenderError(f"{name} contains NaN or infinite values")
    if len(color) != 3:
        raise RenderError(f"color must be 3 RGB values in [0, 1], got {len(color)}")
    if not isinstance(faces, Tensor):
        faces = torch.as_tensor(faces)
    faces = faces.to(device)

    projected = project_vertices(vertices, focal, principal_point, near)
    frags = rasterize(projected, faces, height, width, near=near)
    mask = frags.mask

    if background is None:
        rgb = torch.ones((batch, height, width, 3), dtype=dtype, device=device)
    else:
        background = torch.as_tensor(background)
        if not background.is_floating_point():
            # 0–255 values would sit beside the mesh's [0, 1] shading
            raise RenderError(f"background must be RGB floats in [0, 1], got {background.dtype} "
                              "(divide 8-bit pixels by 255)")
        background = background.to(dtype=dtype, device=device)
        if background.ndim == 3:
            background = background[None]
        if background.shape[1:] != (height, width, 3) or background.shape[0] not in (1, batch):
            raise RenderError(
                f"background must be ({batch}, {height}, {width}, 3) or ({height}, {width}, 3), "
                f"got {tuple(background.shape)}"
            )
        rgb = background.expand(batch, -1, -1, -1).clone()

    if normals is None:
        normals = vertex_normals(vertices, faces.long())  # (B, V, 3)
    else:
        normals = torch.as_tensor(normals).to(dtype=dtype, device=device)
        normals = normals[None] if normals.ndim == 2 else normals
        if normals.shape != vertices.shape:
            raise RenderError(f"normals must be shaped as the vertices, {tuple(vertices.shape)}, "
                              f"got {tuple(normals.shape)}")
        normals = torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)
    # Which side of each face the camera sees: its winding, from the drawn geometry.
    facing = face_normals(vertices, faces.long())  # (B, F, 3)
    focal_b = _per_item(focal, batch, 1, vertices, "focal")[:, 0]
    centre_b = _per_item(principal_point, batch, 2, vertices, "principal_point")
    lights = torch.tensor(HMR_LIGHT_POSITIONS, dtype=dtype, device=device)
    light_colors = torch.tensor(HMR_LIGHT_COLORS, dtype=dtype, device=device)
    albedo = torch.as_tensor(color, dtype=dtype, device=device)
    rgb = rgb.reshape(batch, -1, 3)
    for b in range(batch):  # per item: batches are small, and this keeps the maths to (P, 3) matmuls
        to_light = torch.nn.functional.normalize(lights - vertices[b].mean(0), dim=-1)  # (K, 3)
        visible = torch.nonzero(mask[b].reshape(-1)).squeeze(1)
        # A chunk of pixels at a time: each takes ~150 B of temporaries here,
        # which a large photo's pixels would multiply.
        for pix in visible.split(RESOLVE_CHUNK):
            face_ids = frags.face_index[b].reshape(-1).index_select(0, pix)
            corner_ids = faces.long().index_select(0, face_ids)
            bary = frags.barycentric[b].reshape(-1, 3).index_select(0, pix)
            # Smooth normal at the pixel: barycentric blend of the vertex normals.
            n = normals[b].index_select(0, corner_ids[:, 0]) * bary[:, 0:1]
            for k in (1, 2):
                n = n + normals[b].index_select(0, corner_ids[:, k]) * bary[:, k : k + 1]
            n = torch.nn.functional.normalize(n, dim=-1, eps=1e-12)
            # Two-sided: a face seen from behind (its normal along the viewing ray) shades its other side.
            px = (pix % width).to(dtype) + 0.5
            py = torch.div(pix, width, rounding_mode="floor").to(dtype) + 0.5
            ray = torch.stack([(px - centre_b[b, 0]) / focal_b[b], (py - centre_b[b, 1]) / focal_b[b],
                               torch.ones_like(px)], -1)
            back = (facing[b].index_select(0, face_ids) * ray).sum(-1, keepdim=True) > 0
            n = torch.where(back, -n, n)
            # Directional lights: from each light position towards the mesh centroid.
            rgb[b, pix] = lambert(n, to_light, light_colors, albedo, ambient)
    rgb = rgb.reshape(batch, height, width, 3)

    return RenderResult(rgb=rgb, mask=mask, depth=frags.depth, fragments=frags)


def rotate_about_centroid(vertices: Tensor, degrees: float, axis: str = "y") -> Tensor:
    """Rotate a mesh about its own centroid (the demo's side views).

    The rotation is active and right-handed about the camera-frame ``axis``
    through each mesh's vertex mean. HMR's demo ("diff vp" panels) computed
    ``(v − c)·R + c`` with ``R = Rodrigues(±60° about y)``, i.e. the
    transpose; its panel for +60° is ``rotate_about_centroid(v, -60)``.

    Args:
        vertices: (B, V, 3) or (V, 3).
        degrees: angle in degrees.
        axis: 'x', 'y' or 'z'.
    Returns:
        Rotated vertices, same shape and dtype.
    """
    if axis not in ("x", "y", "z"):
        raise ValueError(f"axis must be 'x', 'y' or 'z', got {axis!r}")
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    rot = torch.eye(3, dtype=vertices.dtype, device=vertices.device)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    centre = vertices.mean(-2, keepdim=True)
    return (vertices - centre) @ rot.T + centre
