"""Z-buffered triangle rasteriser in plain torch (CPU or CUDA, batched).

Conventions, written down once for the whole ``render`` package:

* **Pixels.** Pixel (i, j) — row i, column j — covers [j, j+1) × [i, i+1) in
  continuous image coordinates (u right, v down), the same convention as
  ``openhmr.geometry.camera``. Its centre is (j + 0.5, i + 0.5) and coverage
  is sampled at centres only (one sample per pixel, no anti-aliasing). A point
  projected to u therefore lands in column floor(u).
* **Input vertices** are ``[u, v, z]``: pixel coordinates of a pinhole
  projection plus the camera-frame depth z (positive in front of the camera).
  Because of the perspective, 1/z (not z) is affine in screen space, so the
  depth test interpolates 1/z and barycentrics are perspective-corrected.
* **Coverage rule.** A pixel centre on an edge belongs to every triangle
  sharing that edge (closed half-planes), and shared edges are evaluated with
  bit-identical arithmetic, so meshes are watertight (no cracks).
* **Culling.** None: both windings are drawn (meshes may be mirrored).
  Triangles with any vertex at z <= ``near`` are skipped whole (no clipping).

Algorithm (everything vectorised, no per-triangle Python loop):

1. Per triangle: edge functions, orientation, the rows its pixel centres span.
2. Per (row, triangle), in dense tiles of triangles grouped by row count:
   the exact span of covered columns, solved from the edges' half-planes —
   so no bounding-box pixels are wasted.
3. Per covered (triangle, pixel): 1/z along the span, packed with the triangle id
   into one int64 key; ``scatter_reduce(amin)`` keeps the nearest per pixel.
4. Per visible pixel: barycentrics and depth recomputed from the vertices (so
   they carry gradients w.r.t. the vertices for the fixed visibility).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Fragments", "RenderError", "rasterize"]

# Work is split into chunks of at most this many candidate (triangle, pixel)
# pairs (bounding-box estimate; a triangle larger than that, a band of its rows
# at a time) to bound peak memory (~100-250 B per pair).
DEFAULT_MAX_CANDIDATES = 1 << 23
# Visible pixels resolved (barycentrics, depth) and shaded at once.
RESOLVE_CHUNK = 1 << 21
_INT64_MAX = torch.iinfo(torch.int64).max
_LOW32 = 0xFFFFFFFF


class RenderError(ValueError):
    """Raised for inputs that cannot be rendered (bad shapes, non-finite values, empty image)."""


@dataclass(frozen=True)
class Fragments:
    """Per-pixel rasterisation result.

    Attributes:
        face_index: (B, H, W) int64 index into ``faces`` of the visible
            triangle, -1 for background.
        depth: (B, H, W) camera-frame depth z of the visible surface (same
            unit as the input z), ``inf`` for background.
        barycentric: (B, H, W, 3) perspective-correct barycentric
            coordinates of the pixel centre in the visible triangle (weights
            of its vertices ``faces[f, 0..2]``), zeros for background.
    """

    face_index: Tensor
    depth: Tensor
    barycentric: Tensor

    @property
    def mask(self) -> Tensor:
        """(B, H, W) bool, True where a triangle covers the pixel centre."""
        return self.face_index >= 0


def _check_inputs(vertices_px: Tensor, faces: Tensor, height: int, width: int) -> None:
    if not isinstance(vertices_px, Tensor) or vertices_px.ndim != 3 or vertices_px.shape[-1] != 3:
        shape = tuple(vertices_px.shape) if isinstance(vertices_px, Tensor) else type(vertices_px)
        raise RenderError(f"vertices_px must be a (B, V, 3) tensor of [u, v, z], got {shape}")
    if not vertices_px.is_floating_point():
        raise RenderError(f"vertices_px must be floating point, got {vertices_px.dtype}")
    if not isinstance(faces, Tensor) or faces.ndim != 2 or faces.shape[1] != 3:
        shape = tuple(faces.shape) if isinstance(faces, Tensor) else type(faces)
        raise RenderError(f"faces must be an (F, 3) integer tensor, got {shape}")
    if faces.is_floating_point() or faces.dtype == torch.bool:
        raise RenderError(f"faces must have an integer dtype, got {faces.dtype}")
    if int(height) < 1 or int(width) < 1:
        raise RenderError(f"image size must be at least 1×1, got height={height}, width={width}")
    if vertices_px.shape[0] < 1:
        raise RenderError("batch size must be at least 1")
    if faces.numel() > 0:
        # int64: torch has no min/max for the unsigned types (SMPL files store uint32 faces)
        lo, hi = int(faces.long().min()), int(faces.long().max())
        if lo < 0 or hi >= vertices_px.shape[1]:
            raise RenderError(
                f"faces index vertices in [{lo}, {hi}] but there are only {vertices_px.shape[1]} vertices"
            )
    if not bool(torch.isfinite(vertices_px).all()):
        raise RenderError("vertices_px contains NaN or infinite values")


def rasterize(
    vertices_px: Tensor,
    faces: Tensor,
    height: int,
    width: int,
    *,
    near: float = 1e-4,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
) -> Fragments:
    """Rasterise triangles with a z-buffer (nearest depth wins).

    Args:
        vertices_px: (B, V, 3) per-vertex ``[u, v, z]``: pixel coordinates
            (see the module docstring for the pixel convention) and camera
            depth z > 0. Any float dtype (set-up runs in float32, the
            barycentrics in float32 or float64); any device.
        faces: (F, 3) integer vertex indices, shared by the batch.
        height, width: image size in pixels.
        near: triangles with a vertex at z <= near are skipped.
        max_candidates: memory bound, see ``DEFAULT_MAX_CANDIDATES``.

    Returns:
        ``Fragments`` with (B, H, W) face_index/depth and (B, H, W, 3)
        barycentric, in ``vertices_px``'s dtype. Exact depth ties (the same
        triangle twice, its corners listed in the same order) go to the
        lower face index; with the corners rotated, the depths differ by
        round-off, which then decides. Visibility
        is not differentiable; depth and barycentric are differentiable
        w.r.t. ``vertices_px`` for the fixed visibility.

    Raises:
        RenderError: wrong shapes or dtypes, out-of-range face indices,
            non-finite vertices, or an empty image size.
    """
    _check_inputs(vertices_px, faces, height, width)
    height, width = int(height), int(width)
    batch, num_verts, _ = vertices_px.shape
    num_faces = faces.shape[0]
    device = vertices_px.device
    faces = faces.to(device=device, dtype=torch.long)
    num_pixels = batch * height * width
    # Global vertex ids of every (item, face) triangle: (B·F, 3).
    item_offset = torch.arange(batch, device=device) * num_verts
    tri_verts = (faces[None] + item_offset[:, None, None]).reshape(-1, 3)

    with torch.no_grad():
        zbuf = torch.full((num_pixels,), _INT64_MAX, dtype=torch.long, device=device)
        _fill_zbuffer(
            vertices_px.detach().reshape(-1, 3).float(), tri_verts, num_faces,
            height, width, near, max_candidates, zbuf,
        )
        pix = torch.nonzero(zbuf != _INT64_MAX).squeeze(1)
        tri = zbuf.index_select(0, pix) & _LOW32  # flat triangle id b·F + f

    out_dtype = vertices_px.dtype
    # Pixel centres past 1024 (half) or 256 (bfloat16) are not representable
    # in the half types: the barycentrics are computed in float32 at least.
    work = torch.promote_types(out_dtype, torch.float32)
    face_index = torch.full((num_pixels,), -1, dtype=torch.long, device=device)
    depth = torch.full((num_pixels,), float("inf"), dtype=out_dtype, device=device)
    bary = torch.zeros((num_pixels, 3), dtype=out_dtype, device=device)
    if pix.numel() > 0:
        face = tri if batch == 1 else tri % num_faces
        face_index.index_copy_(0, pix, face)
        # Pixel centres, via float64 division (exact here, and much faster
        # than int64 division on CPU).
        global_row = torch.floor(pix.double() / width)
        px = (pix.double() - global_row * width + 0.5).to(work)
        py = (global_row - torch.floor(global_row / height) * height + 0.5).to(work)
        flat_verts = vertices_px.reshape(-1, 3).to(work)
        # A chunk of visible pixels at a time: the corners gathered per pixel
        # take ~150 B each, which a whole large photo's pixels would multiply.
        parts = []
        for start in range(0, pix.numel(), RESOLVE_CHUNK):
            part = slice(start, start + RESOLVE_CHUNK)
            corner_ids = tri_verts.t().index_select(1, tri[part]).reshape(-1)  # (3·P,) corner-major
            u, v, z = (flat_verts[:, k].index_select(0, corner_ids).view(3, -1) for k in range(3))
            parts.append(_perspective_barycentric(u, v, z, px[part], py[part]))
        weights = torch.cat([w for w, _ in parts], dim=1)
        z_pix = torch.cat([d for _, d in parts])
        depth = depth.index_put((pix,), z_pix.to(out_dtype))
        bary = bary.index_put((pix,), weights.t().to(out_dtype))

    return Fragments(
        face_index=face_index.view(batch, height, width),
        depth=depth.view(batch, height, width),
        barycentric=bary.view(batch, height, width, 3),
    )


def _perspective_barycentric(u: Tensor, v: Tensor, z: Tensor, px: Tensor, py: Tensor) -> tuple[Tensor, Tensor]:
    """Perspective-correct barycentrics and depth at pixel centres.

    Args:
        u, v, z: (3, N) triangle corners ``[u, v, z]``, corner-major (this
            layout keeps every operation contiguous, which is much faster).
        px, py: (N,) pixel-centre coordinates.
    Returns:
        (3, N) barycentric weights and (N,) depth z.
    """
    u_a, v_a = u.roll(-1, 0), v.roll(-1, 0)  # row k: corner k+1
    u_b, v_b = u.roll(1, 0), v.roll(1, 0)  # row k: corner k+2
    # Edge functions relative to a corner (not the origin) keep float32 precise.
    screen = (u_b - u_a) * (py - v_a) - (v_b - v_a) * (px - u_a)
    # 1/z is affine in screen space: interpolate it, then re-weight. (The
    # screen-space normalisation by the area cancels out.)
    weighted = screen / z
    total = weighted.sum(0)
    return weighted / total, screen.sum(0) / total


# Rows of the per-triangle parameter table (one column per triangle). For
# each row of pixels, the covered span is [max(L1, L2), min(U1, U2)] where
# L1/L2 are the triangle's left-bounding edges and U1/U2 its right-bounding
# ones (an edge repeated when there is only one); each edge is stored as its
# line's anchor point and du/dv slope.
_EDGE_SLOTS = 4  # L1, L2, U1, U2
_ANCHOR_U, _ANCHOR_V, _SLOPE = 0, 4, 8  # each spans _EDGE_SLOTS rows
_ROW0, _PLANE_C, _PLANE_U, _PLANE_V, _NUM_PARAMS = 12, 13, 14, 15, 16


def _fill_zbuffer(
    verts: Tensor,
    tri_verts: Tensor,
    num_faces: int,
    height: int,
    width: int,
    near: float,
    max_candidates: int,
    zbuf: Tensor,
) -> None:
    """Scatter packed (1/z, triangle id) keys of all covered pixels into ``zbuf``.

    Args:
        verts: (B·V, 3) float32 ``[u, v, z]``.
        tri_verts: (T, 3) global vertex ids of the T = B·F triangles.
        zbuf: (B·H·W,) int64, filled with int64 max; updated in place.

    Key layout: high 32 bits = minus the float32 bits of 1/z (so a smaller
    key is a nearer surface; positive floats order like their bit patterns),
    low 32 bits = flat triangle id b·F + f (so ties go to the lower face).
    """
    device = verts.device
    u_all, v_all, z_all = (verts[:, k].contiguous() for k in range(3))
    ids = tri_verts.t().contiguous()  # (3, T)
    flat_ids = ids.reshape(-1)
    u = u_all.index_select(0, flat_ids).view(3, -1)  # (3, T): corner, triangle
    v = v_all.index_select(0, flat_ids).view(3, -1)
    z = z_all.index_select(0, flat_ids).view(3, -1)
    area2 = (u[1] - u[0]) * (v[2] - v[0]) - (u[2] - u[0]) * (v[1] - v[0])

    # Edge k joins corners a = k+1 and b = k+2. Its line is written from the
    # endpoint with the lower vertex id, so the two triangles sharing an edge
    # compute bit-identical crossings: closed spans then leave no cracks.
    def corner_a(x: Tensor) -> Tensor:  # row k holds corner k+1
        return x.roll(-1, 0)

    def corner_b(x: Tensor) -> Tensor:  # row k holds corner k+2
        return x.roll(1, 0)

    a_first = corner_a(ids) < corner_b(ids)  # (3, T)
    u_a, v_a, u_b, v_b = corner_a(u), corner_a(v), corner_b(u), corner_b(v)
    anchor_u = torch.where(a_first, u_a, u_b)
    anchor_v = torch.where(a_first, v_a, v_b)
    du = torch.where(a_first, u_b, u_a) - anchor_u
    dv = torch.where(a_first, v_b, v_a) - anchor_v
    # Horizontal edges bound nothing inside the triangle's row range.
    slope = torch.where(dv != 0, du / dv, torch.zeros_like(du))
    # Inside is e_k >= 0 once oriented by the winding; de_k/du = (v_a − v_b)·sign.
    de_du = (v_a - v_b) * torch.sign(area2)
    is_lo, is_hi = de_du > 0, de_du < 0  # edge bounds the span from the left / right
    # First and last bounding edge of each kind (the same edge when only one).
    def first_last(flag: Tensor) -> tuple[Tensor, Tensor]:
        first = torch.where(flag[0], 0, torch.where(flag[1], 1, 2))
        last = torch.where(flag[2], 2, torch.where(flag[1], 1, 0))
        return first, last

    slots = torch.stack([*first_last(is_lo), *first_last(is_hi)])  # (4, T) edge of each slot

    # 1/z is affine in screen space: c + g_u·u + g_v·v.
    inv_z = 1.0 / z.clamp(min=near)
    safe_area = torch.where(area2 != 0, area2, torch.ones_like(area2))
    grad_u = ((v_a - v_b) * inv_z).sum(0) / safe_area
    grad_v = ((u_b - u_a) * inv_z).sum(0) / safe_area
    plane_c = inv_z[0] - grad_u * u[0] - grad_v * v[0]

    # Rows / columns whose pixel centres fall inside the bounding box.
    row0 = torch.ceil(v.amin(0) - 0.5).clamp_(min=0)
    rows = (torch.floor(v.amax(0) - 0.5).clamp_(max=height - 1) - row0 + 1).long()
    col0 = torch.ceil(u.amin(0) - 0.5).clamp_(min=0)
    n_cols = (torch.floor(u.amax(0) - 0.5).clamp_(max=width - 1) - col0 + 1).long()
    usable = (z > near).all(0) & (area2 != 0) & (rows > 0) & (n_cols > 0)
    table = torch.cat(
        [anchor_u.gather(0, slots), anchor_v.gather(0, slots), slope.gather(0, slots),
         torch.stack([row0, plane_c, grad_u, grad_v])]
    )  # (_NUM_PARAMS, T)

    # Triangles are grouped by row count rounded up to a power of two; each
    # group is processed as a dense (rows, triangles) tile.
    level = torch.ceil(torch.log2(rows.clamp(min=1).float())).long()
    # float32's log2 of 2^k + 1 rounds to k from k = 21 on: such a tile would lose its last row
    level = torch.where(torch.bitwise_left_shift(torch.ones_like(level), level) < rows, level + 1, level)
    level = torch.where(usable, level, -1)
    hw = height * width
    item_base = torch.div(torch.arange(ids.shape[1], device=device), num_faces, rounding_mode="floor") * hw
    for lvl in torch.unique(level).tolist():
        if lvl < 0:
            continue
        tile_h = 1 << lvl
        group = torch.nonzero(level == lvl).squeeze(1)
        # Chunks bound memory to ~max_candidates (triangle, pixel) pairs.
        widest = max(1, int(n_cols.index_select(0, group).max()))
        per_chunk = max(1, max_candidates // (tile_h * widest))
        # A single triangle larger than the bound (a background quad) is taken
        # a band of its rows at a time.
        band = tile_h if tile_h * widest <= max_candidates else max(1, max_candidates // widest)
        for start in range(0, group.numel(), per_chunk):
            chunk = group[start : start + per_chunk]
            chunk_rows = rows.index_select(0, chunk)
            chunk_row0 = row0.index_select(0, chunk)
            params = table.index_select(1, chunk)
            for offset in range(0, tile_h, band):
                if offset:
                    params = params.clone()
                    params[_ROW0] = chunk_row0 + offset
                base = item_base.index_select(0, chunk) + (chunk_row0.long() + offset) * width
                _raster_tile(chunk, (chunk_rows - offset).clamp(min=0), base, params,
                             min(band, tile_h - offset), width, zbuf)


def _raster_tile(
    tri: Tensor,
    rows: Tensor,
    base: Tensor,
    params: Tensor,
    tile_h: int,
    width: int,
    zbuf: Tensor,
) -> None:
    """Rasterise n triangles ``tri`` (n,) whose ``rows`` (n,) are <= ``tile_h``.

    ``base`` (n,) is the flat index of each triangle's first row's pixel 0 and
    ``params`` the (_NUM_PARAMS, n) table. A span is one (row, triangle) pair.
    """
    device = tri.device
    step = torch.arange(tile_h, device=device)[:, None]  # (h, 1)
    yc = params[_ROW0] + (step + 0.5)  # (h, n) row-centre v
    # Where each bounding edge's line crosses the row-centre line.
    cross = [
        torch.addcmul(params[_ANCHOR_U + s], yc - params[_ANCHOR_V + s], params[_SLOPE + s])
        for s in range(_EDGE_SLOTS)
    ]
    # Closed span [x_lo, x_hi] → pixel columns [j0, j_end) with centres inside.
    j0 = torch.ceil(torch.maximum(cross[0], cross[1]) - 0.5).clamp_(min=0, max=width)
    j_end = torch.floor(torch.minimum(cross[2], cross[3]) + 0.5).clamp_(min=0, max=width)
    n_pix = ((j_end - j0).clamp_(min=0) * (step < rows)).long().reshape(-1)
    total = int(n_pix.sum())
    if total == 0:
        return

    # Per span: 1/z at its first pixel centre, and the flat index of that pixel.
    inv_start = torch.addcmul(torch.addcmul(params[_PLANE_C], params[_PLANE_V], yc), params[_PLANE_U], j0 + 0.5)
    first = n_pix.cumsum(0) - n_pix
    start_flat = (base + step * width + j0.long()).reshape(-1)
    # Per pixel: only gathers and one multiply-add.
    local = torch.repeat_interleave(torch.arange(n_pix.numel(), device=device), n_pix, output_size=total)
    along = torch.arange(total, device=device) - first.index_select(0, local)
    flat = start_flat.index_select(0, local) + along
    inv_depth = torch.addcmul(
        inv_start.reshape(-1).index_select(0, local),
        params[_PLANE_U].expand(tile_h, -1).reshape(-1).index_select(0, local),
        along.float(),
    )
    # Positive floats sort like their bit patterns; negate so nearer = smaller.
    bits = inv_depth.clamp_(min=1e-30).view(torch.int32).long()
    key = (bits.neg_() << 32) | tri.expand(tile_h, -1).reshape(-1).index_select(0, local)
    zbuf.scatter_reduce_(0, flat, key, reduce="amin", include_self=True)
