"""openhmr.render checked against geometry: analytic silhouettes, polygon fills,
camera maths, a brute-force z-buffer, and the compositing contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from openhmr.render import (
    RenderError,
    project_vertices,
    rasterize,
    render_mesh,
    rotate_about_centroid,
)
from openhmr.render.primitives import icosphere, uv_sphere

cv2 = pytest.importorskip("cv2", reason="OpenCV comes with the demo extra (pip install 'openhmr[demo]')")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _blob(seed: int = 0, subdivisions: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """A random-ish closed body-like blob in front of the camera (camera frame, metres)."""
    v, f = icosphere(subdivisions)
    g = torch.Generator().manual_seed(seed)
    bumps = 1.0 + 0.15 * torch.sin(3 * v[:, :1] + torch.rand(1, 3, generator=g) * 6).sum(1, keepdim=True)
    v = v * bumps * torch.tensor([0.3, 0.8, 0.25]) + torch.tensor([0.05, -0.1, 3.0])
    return v, f


def _brute_force(vertices_px: np.ndarray, faces: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reference z-buffer: every triangle tested at every pixel centre, float64."""
    jj, ii = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    best = np.full((height, width), np.inf)
    index = np.full((height, width), -1)
    for fi, (a, b, c) in enumerate(faces):
        (u0, v0, z0), (u1, v1, z1), (u2, v2, z2) = vertices_px[a], vertices_px[b], vertices_px[c]
        area = (u1 - u0) * (v2 - v0) - (u2 - u0) * (v1 - v0)
        if area == 0:
            continue
        l0 = ((u2 - u1) * (ii - v1) - (v2 - v1) * (jj - u1)) / area
        l1 = ((u0 - u2) * (ii - v2) - (v0 - v2) * (jj - u2)) / area
        l2 = 1.0 - l0 - l1
        inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
        depth = 1.0 / (l0 / z0 + l1 / z1 + l2 / z2)
        closer = inside & (depth < best)
        best[closer], index[closer] = depth[closer], fi
    return index


def _quad(x0: float, x1: float, y0: float, y1: float, z: float) -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.tensor([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]])
    return v, torch.tensor([[0, 1, 2], [0, 2, 3]])


# --- 1. silhouettes against independent references ---------------------------


def test_sphere_silhouette_matches_analytic_cone() -> None:
    """A fine icosphere's silhouette vs the exact ray/sphere test at pixel centres."""
    v, f = icosphere(4)
    centre, radius = torch.tensor([0.35, -0.2, 2.5]), 0.5  # off-axis: the silhouette is an ellipse
    focal, cx, cy, size = 300.0, 120.0, 136.0, 256
    out = render_mesh((v * radius + centre)[None], f, focal, (cx, cy), size, size)
    jj, ii = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    rays = np.stack([(jj - cx) / focal, (ii - cy) / focal, np.ones_like(jj)], -1)
    c = centre.numpy().astype(np.float64)
    dist2 = (c @ c) - (rays @ c) ** 2 / (rays**2).sum(-1)
    analytic = dist2 <= radius**2
    mask = out.mask[0].numpy()
    assert analytic.sum() > 5000
    assert _iou(mask, analytic) >= 0.98
    # The tessellation is inscribed in the sphere, so it can only lose pixels.
    assert (mask & ~analytic).sum() <= 0.002 * analytic.sum()


def test_blob_silhouette_matches_polygon_fill() -> None:
    v, f = _blob(seed=1)
    size, focal = 256, 400.0
    out = render_mesh(v[None], f, focal, None, size, size)
    uv = project_vertices(v[None], focal, (size / 2, size / 2))[0, :, :2].numpy()
    reference = np.zeros((size, size), np.uint8)
    # cv2 puts integer coordinates at pixel centres: shift by half a pixel, 8 fractional bits.
    for tri in np.round((uv[f.numpy()] - 0.5) * 256).astype(np.int32):
        cv2.fillPoly(reference, [tri], 1, lineType=cv2.LINE_8, shift=8)
    assert reference.sum() > 5000
    assert _iou(out.mask[0].numpy(), reference > 0) >= 0.98


def test_visibility_matches_brute_force_zbuffer() -> None:
    """Face index per pixel equals a float64 brute-force rasteriser almost everywhere."""
    v, f = _blob(seed=2, subdivisions=2)
    size = 96
    px = project_vertices(v[None], 130.0, (size / 2, size / 2))
    frags = rasterize(px, f, size, size)
    reference = _brute_force(px[0].double().numpy(), f.numpy(), size, size)
    got = frags.face_index[0].numpy()
    assert (reference >= 0).sum() > 1500
    # Only pixel centres within float32 rounding of an edge may differ.
    assert (got != reference).mean() < 0.002


def test_shared_edges_leave_no_cracks() -> None:
    """A jittered triangulated grid covers every pixel centre inside its border."""
    n, size = 24, 100
    g = torch.Generator().manual_seed(3)
    xs = torch.linspace(10.0, 90.0, n + 1)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2)
    interior = ((grid > 10.0) & (grid < 90.0)).all(1, keepdim=True)
    grid = grid + interior * (torch.rand(grid.shape, generator=g) - 0.5) * 2.5
    idx = torch.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    # Mixed windings on purpose: both must be drawn.
    faces = torch.cat([torch.stack([a, b, d], -1).reshape(-1, 3), torch.stack([a, c, d], -1).reshape(-1, 3)])
    verts = torch.cat([grid, torch.full((grid.shape[0], 1), 2.0)], 1)[None]
    frags = rasterize(verts, faces, size, size)
    expected = torch.zeros(size, size, dtype=torch.bool)
    expected[10:90, 10:90] = True  # centres 10.5 … 89.5
    assert torch.equal(frags.mask[0], expected)


# --- 2. camera maths -------------------------------------------------------------


def test_markers_land_where_the_camera_puts_them() -> None:
    points = torch.tensor([[0.0, 0.0, 3.0], [0.4, -0.3, 2.5], [-0.55, 0.35, 4.0], [0.123, 0.456, 3.3]])
    focal, pp, size = torch.tensor([480.0]), torch.tensor([[131.3, 118.6]]), 256
    ov, of = icosphere(1)
    verts = torch.cat([ov * 0.03 + p for p in points])[None]
    faces = torch.cat([of + k * ov.shape[0] for k in range(len(points))])
    frags = rasterize(project_vertices(verts, focal, pp), faces, size, size)
    expected = focal * points[:, :2] / points[:, 2:] + pp
    for k in range(len(points)):
        on = (frags.face_index[0] // of.shape[0] == k) & frags.mask[0]
        rows, cols = torch.nonzero(on, as_tuple=True)
        assert rows.numel() >= 20  # a blob, not a speck
        centroid = torch.stack([cols.double().mean() + 0.5, rows.double().mean() + 0.5])
        assert torch.linalg.norm(centroid - expected[k].double()) < 1.0


def test_pixel_convention_floor_of_projection() -> None:
    """A point projected to (u, v) lies in column floor(u), row floor(v)."""
    u, v, e = 10.3, 20.7, 0.3
    tri = torch.tensor([[[u - e, v - e, 1.0], [u + e, v - e, 1.0], [u, v + e, 1.0]]])
    frags = rasterize(tri, torch.tensor([[0, 1, 2]]), 32, 32)
    assert torch.nonzero(frags.mask[0]).tolist() == [[20, 10]]


def test_barycentrics_are_perspective_correct() -> None:
    """Interpolating 3D corners with the returned weights lands on each pixel's ray."""
    v = torch.tensor([[-0.5, -0.4, 1.5], [0.6, -0.3, 4.0], [0.1, 0.5, 2.2]], dtype=torch.float64)
    focal, c, size = 60.0, 32.0, 64
    frags = rasterize(project_vertices(v[None], focal, (c, c)), torch.tensor([[0, 1, 2]]), size, size)
    rows, cols = torch.nonzero(frags.mask[0], as_tuple=True)
    w = frags.barycentric[0, rows, cols]
    assert torch.allclose(w.sum(-1), torch.ones(len(w), dtype=torch.float64))
    point = w @ v
    assert torch.allclose(point[:, 2], frags.depth[0, rows, cols])
    assert torch.allclose(focal * point[:, 0] / point[:, 2] + c, cols.double() + 0.5, atol=1e-6)
    assert torch.allclose(focal * point[:, 1] / point[:, 2] + c, rows.double() + 0.5, atol=1e-6)


# --- 3. z-buffer, compositing, batching -----------------------------------------


@pytest.mark.parametrize("near_first", [True, False])
def test_nearer_quad_wins_regardless_of_order(near_first: bool) -> None:
    near_v, near_f = _quad(-0.2, 0.4, -0.3, 0.3, 2.0)
    far_v, far_f = _quad(-0.4, 0.2, -0.2, 0.4, 3.0)
    parts = [(near_v, near_f), (far_v, far_f)] if near_first else [(far_v, far_f), (near_v, near_f)]
    verts = torch.cat([parts[0][0], parts[1][0]])
    faces = torch.cat([parts[0][1], parts[1][1] + 4])
    near_faces = {0, 1} if near_first else {2, 3}
    out = render_mesh(verts[None], faces, 100.0, (50.0, 50.0), 100, 100)
    frags = out.fragments
    # Pixel (row 50, col 55) sees both quads: the nearer one (z = 2) must win.
    assert int(frags.face_index[0, 50, 55]) in near_faces
    assert float(out.depth[0, 50, 55]) == pytest.approx(2.0)
    # Only the far quad covers row 50, col 38 (x ≈ −0.35 m at z = 3, −0.23 m at z = 2).
    assert int(frags.face_index[0, 50, 38]) not in near_faces
    assert float(out.depth[0, 50, 38]) == pytest.approx(3.0)
    front = torch.isin(frags.face_index[0], torch.tensor(sorted(near_faces)))
    assert torch.allclose(out.depth[0][front], torch.tensor(2.0))


def test_background_and_mask_compositing() -> None:
    v, f = _blob(seed=4, subdivisions=2)
    size = 64
    background = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(0))
    out = render_mesh(v[None], f, 100.0, None, size, size, color=(0.9, 0.7, 0.7), background=background)
    mask = out.mask[0]
    assert mask.dtype == torch.bool and 0 < mask.sum() < size * size
    assert torch.equal(out.rgb[0][~mask], background[0][~mask])  # untouched off the mesh
    with pytest.raises(RenderError, match=r"RGB floats in \[0, 1\], got torch.uint8 \(divide 8-bit pixels by 255\)"):
        render_mesh(v[None], f, 100.0, None, size, size,
                    background=(background * 255).to(torch.uint8).numpy())
    assert torch.isinf(out.depth[0][~mask]).all() and torch.isfinite(out.depth[0][mask]).all()
    assert torch.equal(out.alpha[0], mask.float())
    shaded = out.rgb[0][mask]
    assert shaded.min() >= 0.0 and shaded.max() <= 1.0
    assert shaded.sum(-1).min() > 0.3  # the ambient term: nothing is black
    assert shaded.std(0).max() > 0.02  # and the lights shade it (not a flat colour)
    white = render_mesh(v[None], f, 100.0, None, size, size)
    assert torch.equal(white.rgb[0][~mask], torch.ones(int((~mask).sum()), 3))


def test_batched_render_equals_per_item() -> None:
    v, f = _blob(seed=5, subdivisions=2)
    verts = torch.stack([v, rotate_about_centroid(v, 60.0), v * torch.tensor([-1.0, 1.0, 1.0])])  # mirrored too
    focal = torch.tensor([90.0, 110.0, 100.0])
    pp = torch.tensor([[40.0, 32.0], [30.0, 34.0], [32.0, 32.0]])
    batched = render_mesh(verts, f, focal, pp, 64, 72)
    for k in range(3):
        single = render_mesh(verts[k : k + 1], f, float(focal[k]), pp[k], 64, 72)
        assert torch.equal(batched.mask[k], single.mask[0])
        assert torch.equal(batched.fragments.face_index[k], single.fragments.face_index[0])
        assert torch.allclose(batched.rgb[k], single.rgb[0], atol=1e-6)
    assert batched.mask[2].sum() > 500  # the mirrored (inside-out) mesh renders too


def test_half_precision_vertices_render_as_float32() -> None:
    """float16 vertices are rendered in float32: the same picture as their
    float32 values, not normals bent by half precision's round-off."""
    v, f = _blob(seed=5, subdivisions=2)
    half = v.half()
    got = render_mesh(half, f, 100.0, None, 64, 72)
    want = render_mesh(half.float(), f, 100.0, None, 64, 72)
    assert got.rgb.dtype == torch.float32
    assert torch.equal(got.mask, want.mask) and torch.equal(got.rgb, want.rgb)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_rasterises_at_the_true_pixel_centres(dtype) -> None:
    """Past column 1024 (float16) or 256 (bfloat16), j + 0.5 is not a half
    number: the barycentrics and depth are computed in float32, so they are
    those of float64 but for the output's rounding (0.05 and 0.35 off, and
    negative barycentrics, before)."""
    vertices = torch.tensor([[[1504.0, 0.0, 1.0], [1544.0, 0.0, 4.0], [1504.0, 40.0, 1.0]]])  # exact in any dtype
    faces = torch.tensor([[0, 1, 2]])
    truth = rasterize(vertices.double(), faces, 48, 1600)
    half = rasterize(vertices.to(dtype), faces, 48, 1600)
    assert torch.equal(half.face_index, truth.face_index) and half.depth.dtype == dtype
    inside = truth.mask[0]
    tolerance = 4 * torch.finfo(dtype).eps
    assert (half.barycentric[0][inside].double() - truth.barycentric[0][inside]).abs().max() < tolerance
    assert ((half.depth[0][inside].double() / truth.depth[0][inside]) - 1).abs().max() < tolerance
    assert half.barycentric[0][inside].min() >= 0


def test_unsigned_face_indices_render() -> None:
    """SMPL files store their faces as uint32, for which torch has no min():
    they render as int64 faces do (it was a NotImplementedError)."""
    vertices, faces = icosphere(2)
    vertices = vertices * 0.5 + torch.tensor([0.0, 0.0, 3.0])
    expected = render_mesh(vertices, faces, 100.0, None, 32, 32).rgb
    for unsigned in (faces.numpy().astype(np.uint32), faces.numpy().astype(np.uint16)):
        assert torch.equal(render_mesh(vertices, unsigned, 100.0, None, 32, 32).rgb, expected)


def test_chunking_does_not_change_the_result() -> None:
    """Including exact depth ties on shared edges: they go to the lower face index."""
    v, f = uv_sphere(24, 16)
    px = project_vertices((v * 0.5 + torch.tensor([0.0, 0.0, 2.0]))[None], 80.0, (40.0, 40.0))
    whole = rasterize(px, f, 80, 80)
    chunked = rasterize(px, f, 80, 80, max_candidates=2000)
    assert torch.equal(whole.face_index, chunked.face_index)
    assert torch.equal(whole.depth, chunked.depth)


def test_resolving_and_shading_a_chunk_of_pixels_at_a_time_changes_nothing(monkeypatch) -> None:
    """The visible pixels are resolved (barycentrics, depth) and shaded a chunk
    at a time, so that a large photo's temporaries stay bounded: the picture
    and depths are those of one pass, bit for bit, and the gradients to
    float32 round-off (their sums are accumulated in another order)."""
    import openhmr.render.rasterizer as rasterizer_module
    import openhmr.render.renderer as renderer_module

    v, f = uv_sphere(24, 16)

    def render() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        verts = (v * 0.5 + torch.tensor([0.0, 0.0, 2.0])).requires_grad_(True)
        out = render_mesh(verts[None], f, 80.0, None, 80, 80)
        out.depth[out.mask].sum().backward()
        return out.rgb.detach(), out.depth.detach(), verts.grad

    whole = render()
    monkeypatch.setattr(rasterizer_module, "RESOLVE_CHUNK", 97)
    monkeypatch.setattr(renderer_module, "RESOLVE_CHUNK", 97)
    chunked = render()
    assert (whole[1] < float("inf")).sum() > 10 * 97
    assert torch.equal(whole[0], chunked[0]) and torch.equal(whole[1], chunked[1])
    torch.testing.assert_close(whole[2], chunked[2], rtol=1e-5, atol=1e-4)


def test_a_triangle_larger_than_the_chunk_is_drawn_in_bands_alike() -> None:
    """A background quad (two triangles of ~5,000 pixels each) under a bound of
    300 (triangle, pixel) pairs is taken a few rows at a time: the same image."""
    quad = torch.tensor([[-1.0, -1.0, 5.0], [101.0, -1.0, 5.0], [101.0, 91.0, 5.0], [-1.0, 91.0, 5.0]])
    v, f = uv_sphere(24, 16)
    sphere = project_vertices((v * 0.5 + torch.tensor([0.0, 0.0, 2.0]))[None], 80.0, (50.0, 45.0))[0]
    verts = torch.cat([quad, sphere])[None]
    faces = torch.cat([torch.tensor([[0, 1, 2], [0, 2, 3]]), f + 4])
    whole = rasterize(verts, faces, 90, 100)
    banded = rasterize(verts, faces, 90, 100, max_candidates=300)
    assert bool(whole.mask.all())
    assert torch.equal(whole.face_index, banded.face_index)
    assert torch.equal(whole.depth, banded.depth)


def test_an_image_of_two_million_rows_keeps_its_last_row() -> None:
    """float32's log2(2^21 + 1) rounds to 21: the triangle's tile was 2^21 rows
    tall, one short of the rows it spans."""
    height = 2**21 + 1
    v = torch.tensor([[[-1.0, -1.0, 1.0], [3.0, -1.0, 1.0], [-1.0, 2.0 * height + 2, 1.0]]])
    assert bool(rasterize(v, torch.tensor([[0, 1, 2]]), height, 1).mask.all())


def test_triangles_behind_the_camera_are_skipped() -> None:
    v, f = _quad(-0.5, 0.5, -0.5, 0.5, 2.0)
    v[1, 2] = -1.0  # the first triangle (0, 1, 2) straddles the camera plane
    out = render_mesh(v[None], f, 50.0, None, 40, 40)
    assert set(out.fragments.face_index.unique().tolist()) == {-1, 1}
    assert render_mesh((v - torch.tensor([0.0, 0.0, 5.0]))[None], f, 50.0, None, 40, 40).mask.sum() == 0


def test_rotate_about_centroid() -> None:
    v, _ = _blob(seed=6, subdivisions=1)
    r = rotate_about_centroid(v, 90.0, "y")
    centre = v.mean(0)
    assert torch.allclose(r.mean(0), centre, atol=1e-6)
    assert torch.allclose(torch.cdist(r.double(), r.double()), torch.cdist(v.double(), v.double()), atol=1e-5)
    # Right-handed about +y: +x goes to −z.
    d = v[0] - centre
    assert torch.allclose(r[0] - centre, torch.stack([d[2], d[1], -d[0]]), atol=1e-6)
    assert torch.allclose(rotate_about_centroid(r[None], -90.0)[0], v, atol=1e-6)


# --- errors and devices ------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda v, f: rasterize(v[0], f, 10, 10), r"\(B, V, 3\)"),
        (lambda v, f: rasterize(v, f[:, :2], 10, 10), r"\(F, 3\)"),
        (lambda v, f: rasterize(v, f.float(), 10, 10), "integer"),
        (lambda v, f: rasterize(v, f + 10, 10, 10), "faces index"),
        (lambda v, f: rasterize(v, f, 0, 10), "image size"),
        (lambda v, f: rasterize(v * float("nan"), f, 10, 10), "NaN"),
        (lambda v, f: render_mesh(v[..., :2], f, 10.0, None, 10, 10), "vertices"),
        (lambda v, f: render_mesh(v, f, torch.ones(3), None, 10, 10), "focal"),
        (lambda v, f: render_mesh(v, f, 10.0, None, 10, 10, background=torch.ones(5, 5, 3)), "background"),
        (lambda v, f: render_mesh(v, f, float("nan"), None, 10, 10), "focal contains NaN"),
        (lambda v, f: render_mesh(v, f, 10.0, (float("nan"), 4.0), 10, 10), "principal_point contains NaN"),
        (lambda v, f: render_mesh(v, f, 10.0, None, 10, 10, color=(1.0, 0.0, 0.0, 0.5)), "3 RGB values"),
        (lambda v, f: render_mesh(v, f, 10.0, None, 10, 10, normals=torch.ones(3, 3)), "normals must be"),
    ],
)
def test_invalid_inputs_raise_render_error(call, message: str) -> None:
    v, f = _quad(-0.5, 0.5, -0.5, 0.5, 2.0)
    with pytest.raises(RenderError, match=message):
        call(v[None], f)


def test_render_error_is_a_value_error() -> None:
    assert issubclass(RenderError, ValueError)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    v, f = _blob(seed=7)
    cpu = render_mesh(v[None], f, 150.0, None, 96, 96)
    gpu = render_mesh(v[None].cuda(), f.cuda(), 150.0, None, 96, 96)
    assert (gpu.fragments.face_index.cpu() != cpu.fragments.face_index).float().mean() < 0.002
    assert torch.allclose(gpu.rgb.cpu()[cpu.mask], cpu.rgb[cpu.mask], atol=1e-3) or math.isclose(
        float((gpu.rgb.cpu() - cpu.rgb).abs().mean()), 0.0, abs_tol=1e-3
    )


def test_rendering_in_the_mesh_window_equals_the_whole_image() -> None:
    """``openhmr.demo.outputs.render_in_window`` (the demo's overlays) renders
    only the box around the projected mesh and pastes it into the picture:
    the same picture and mask as rendering the whole image, up to float
    round-off at a few edge pixels — for a mesh inside, one cut by the image
    edge, one outside it and one behind the camera."""
    from openhmr.demo.outputs import render_in_window

    verts, faces = _blob(seed=4)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (180, 240, 3), dtype=np.uint8)
    background = torch.from_numpy(image.astype(np.float32)) / 255.0
    for shift, visible in (((0.0, 0.0, 4.0), True), ((1.6, -0.5, 0.0), True), ((9.0, 0.0, 4.0), False),
                           ((0.0, 0.0, -4.0), False)):
        placed = verts + torch.tensor(shift)
        for with_background in (True, False):
            picture, mask = render_in_window(image, placed, faces, 200.0, [118.3, 91.7], with_background)
            whole = render_mesh(placed, faces, 200.0, [118.3, 91.7], 180, 240,
                                background=background if with_background else None)
            expected = (whole.rgb[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            assert picture.shape == image.shape and picture.dtype == np.uint8
            assert int((mask != whole.mask[0].numpy()).sum()) <= 2
            same = mask == whole.mask[0].numpy()
            assert int(np.abs(picture.astype(int) - expected)[same].max()) <= 1
            assert bool(mask.any()) == visible
            assert bool(mask[:, -1].any()) == (shift[0] == 1.6)  # the second is cut by the right edge
            if not visible:
                np.testing.assert_array_equal(picture, image if with_background else np.full_like(image, 255))
    with pytest.raises(RenderError, match="NaN or infinite"):
        render_in_window(image, verts * float("nan"), faces, 200.0, [118.3, 91.7])


def test_panel_titles_keep_their_spaces():
    """A title is drawn legibly: in "2D only" the gap between the words is the
    widest of the title's gaps between ink columns, by 2 px or more (Pillow's
    default 10-px font rounded the space to a letter's gap: "2Donly")."""
    from openhmr.visualize import compose_panels

    blank = np.full((40, 160, 3), 128, np.uint8)
    sheet = compose_panels([("2D only", blank)], columns=1)
    ink = (sheet[:20] < 60).all(-1).any(0)
    cols = np.nonzero(ink)[0]
    inside = ink[cols.min():cols.max() + 1]
    edges = np.flatnonzero(np.diff(inside.astype(int)))  # ink→blank and blank→ink
    gaps = sorted(int(b - a) for a, b in zip(edges[::2], edges[1::2]))
    assert gaps[-1] >= gaps[-2] + 2, gaps
    assert compose_panels([("a", blank)] * 3, columns=2).shape == (2 * 40 + 3 * 4, 2 * 160 + 3 * 4, 3)


def test_double_hyphens_in_titles_stay_two():
    """"--max-people" must not read as "–max-people": at 12 px the font draws
    "--" as one unbroken dash, so adjacent hyphens get a pixel between them."""
    from openhmr.visualize import compose_panels

    blank = np.full((40, 160, 3), 255, np.uint8)  # white: only the title is ink

    def dashes(title: str) -> int:
        sheet = compose_panels([(title, blank)], columns=1)
        ink = (sheet[:20, :60] < 200).all(-1)  # any ink, anti-aliased edges included
        row = ink[int(np.argmax(ink.sum(1)))]  # the dashes' row has the most ink
        return int((np.diff(row.astype(int)) == 1).sum())  # runs of ink

    assert dashes("-") == 1
    assert dashes("--") == 2
    assert dashes("---") == 3


# --- shading against Lambert by hand -------------------------------------------


def _hmr_light_directions_by_hand(target: torch.Tensor) -> torch.Tensor:
    """HMR's demo lights (OpenDR ``simple_renderer``): the points (−200, −100, −100),
    (800, 10, 300) and (−500, 500, 1000) as row vectors times R_y(120°) (HMR's
    ``_rotateY``), then unit vectors from ``target`` towards each light — written
    out here independently of ``openhmr.render.shading``."""
    c, s = math.cos(math.radians(120.0)), math.sin(math.radians(120.0))
    rot_y = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float64)
    points = torch.tensor([[-200.0, -100.0, -100.0], [800.0, 10.0, 300.0], [-500.0, 500.0, 1000.0]],
                          dtype=torch.float64) @ rot_y
    return torch.nn.functional.normalize(points - target.to(torch.float64), dim=-1)


def _lambert_by_hand(normal, target: torch.Tensor, albedo, ambient: float = 0.3) -> torch.Tensor:
    """albedo · (ambient + Σ_k colour_k · max(0, n·l_k)) with colours (1, 1, 0.7)."""
    n = torch.nn.functional.normalize(torch.as_tensor(normal, dtype=torch.float64), dim=0)
    cosines = (_hmr_light_directions_by_hand(target) @ n).clamp(min=0.0)
    intensity = ambient + float((cosines * torch.tensor([1.0, 1.0, 0.7], dtype=torch.float64)).sum())
    return (torch.as_tensor(albedo, dtype=torch.float64) * intensity).clamp(0.0, 1.0)


def test_square_facing_the_camera_shades_as_lambert_by_hand() -> None:
    """A flat square straight ahead (z = 2 m, camera frame x right, y down, z
    forward) has the normal (0, 0, −1) towards the camera, so every pixel on it
    must be albedo · (0.3 + Σ colour_k · max(0, −l_k,z)) with the HMR lights
    shining from their positions towards the mesh centroid — ≈ 1.34·albedo here.
    A normal flipped away from the camera, or lights pointing the wrong way, give
    ≈ 0.93·albedo instead (light 2 is behind the square, lights 1 and 3 in front),
    so the 1/255-per-channel tolerance separates them by ~100×. Two-sided: the
    same square with reversed vertex order (its geometric normal away from the
    camera) shades identically. The albedo keeps every channel below the clip."""
    albedo = (0.3, 0.5, 0.6)
    v, f = _quad(-0.5, 0.5, -0.5, 0.5, 2.0)
    expected = _lambert_by_hand((0.0, 0.0, -1.0), v.mean(0), albedo).float()
    assert float(expected.max()) < 0.95  # not clipped: the test sees the light sum
    wrong_way = _lambert_by_hand((0.0, 0.0, 1.0), v.mean(0), albedo).float()
    assert float((expected - wrong_way).abs().max()) > 0.1  # the test can tell the two apart
    for faces in (f, f.flip(1)):
        out = render_mesh(v[None], faces, 50.0, None, 40, 40, color=albedo)
        mask = out.mask[0]
        assert bool(mask[20, 20]) and int(mask.sum()) > 500
        assert torch.allclose(out.rgb[0, 20, 20], expected, atol=1 / 255)
        assert torch.allclose(out.rgb[0][mask], expected.expand(int(mask.sum()), 3), atol=1 / 255)


@pytest.mark.parametrize("tilt", [(35.0, 0.0), (-35.0, 0.0), (0.0, 40.0), (0.0, -40.0), (25.0, -30.0)])
def test_tilted_square_shades_as_lambert_by_hand(tilt: tuple[float, float]) -> None:
    """A flat square tilted about the camera's y and x axes (degrees) has the
    exact normal R·(0, 0, −1) towards the camera; its centre pixel must shade as
    Lambert by hand for that normal, within 1/255 per channel. Tilting moves the
    normal across the lights' cones, so a light direction reversed or a two-sided
    flip inverted is caught for light positions on every side, not only for the
    frontal normal."""
    yaw, pitch = (math.radians(a) for a in tilt)
    cy, sy, cx, sx = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    ry = torch.tensor([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    rot = rx @ ry
    v, f = _quad(-0.5, 0.5, -0.5, 0.5, 0.0)
    v = v @ rot.T + torch.tensor([0.0, 0.0, 2.5])
    normal = rot @ torch.tensor([0.0, 0.0, -1.0])
    albedo = (0.35, 0.45, 0.55)
    expected = _lambert_by_hand(normal, v.mean(0), albedo).float()
    wrong_way = _lambert_by_hand(-normal, v.mean(0), albedo).float()
    assert float((expected - wrong_way).abs().max()) > 0.05
    for faces in (f, f.flip(1)):
        out = render_mesh(v[None], faces, 60.0, None, 48, 48, color=albedo)
        assert bool(out.mask[0, 24, 24])
        assert torch.allclose(out.rgb[0, 24, 24], expected, atol=1 / 255)


def test_sphere_centre_pixel_shades_as_lambert_by_hand() -> None:
    """The pixel at the centre of a sphere straight ahead sees the surface whose
    normal points back at the camera, (0, 0, −1); with smooth (interpolated
    vertex) normals on a fine icosphere it must match Lambert by hand for that
    normal within 2/255 per channel (the mesh's smooth normal there deviates by < 1°)."""
    albedo = (0.3, 0.5, 0.6)
    v, f = icosphere(4)
    v = v * 0.5 + torch.tensor([0.0, 0.0, 3.0])
    # Principal point (32.5, 32.5): the centre of pixel (32, 32) looks straight down the z axis.
    out = render_mesh(v[None], f, 100.0, (32.5, 32.5), 64, 64, color=albedo)
    assert bool(out.mask[0, 32, 32])
    expected = _lambert_by_hand((0.0, 0.0, -1.0), v.mean(0), albedo).float()
    assert torch.allclose(out.rgb[0, 32, 32], expected, atol=2 / 255)


def test_front_faces_keep_their_smooth_normal_at_the_silhouette() -> None:
    """A coarse sphere seen from outside shows front faces only; near its
    outline the interpolated normal of a front face leans away from the
    camera, and flipping it there (as the two-sided test once did, on the
    smooth normal) lit a one-pixel rim like the far side. The rim's pixels
    (every fifth) must shade as Lambert by hand with the unflipped smooth normal."""
    from openhmr.render.shading import vertex_normals

    albedo = (0.3, 0.5, 0.6)
    v, f = uv_sphere(20, 15)
    v = v + torch.tensor([0.0, 0.0, 3.0])
    out = render_mesh(v[None], f, 300.0, None, 200, 200, color=albedo)
    normals = vertex_normals(v[None], f.long())[0]
    ys, xs = torch.nonzero(out.mask[0], as_tuple=True)
    faces = out.fragments.face_index[0, ys, xs].long()
    bary = out.fragments.barycentric[0, ys, xs]
    smooth = (normals[f.long()[faces]] * bary[..., None]).sum(1)
    rays = torch.stack([(xs + 0.5 - 100.0) / 300.0, (ys + 0.5 - 100.0) / 300.0, torch.ones_like(xs, dtype=v.dtype)], -1)
    leaning = (smooth * rays).sum(-1) > 0
    assert int(leaning.sum()) > 20  # the rim the old flip got wrong
    for k in torch.nonzero(leaning).flatten()[::5].tolist():
        expected = _lambert_by_hand(smooth[k], v.mean(0), albedo).float()
        assert torch.allclose(out.rgb[0, ys[k], xs[k]], expected, atol=1 / 255), k


def test_given_normals_replace_the_mesh_own() -> None:
    """``normals=`` shades with the given vertex normals (a mesh sheared into
    another camera keeps its own): a flat square given the normals of a square
    turned 35° shades as that one does, while the two-sided test still looks at
    the drawn faces (reversed winding with its reversed normals shades alike)."""
    from openhmr.render.shading import face_normals

    v, f = _quad(-0.5, 0.5, -0.5, 0.5, 2.0)
    yaw = math.radians(35.0)
    normal = torch.tensor([math.sin(yaw), 0.0, -math.cos(yaw)])
    albedo = (0.35, 0.45, 0.55)
    expected = _lambert_by_hand(normal, v.mean(0), albedo).float()
    for faces in (f, f.flip(1)):
        # normals on the winding's side, as a mesh's own are: the back of a face shades its front's normal
        winding = face_normals(v[None], faces.long())[0, 0]
        given = normal if float(winding @ normal) > 0 else -normal
        out = render_mesh(v[None], faces, 50.0, None, 40, 40, color=albedo, normals=given.expand(4, 3))
        assert torch.allclose(out.rgb[0, 20, 20], expected, atol=1 / 255)


def _lsp14_legs(height: int = 100) -> np.ndarray:
    """LSP-14 keypoints with only the two lower legs placed (the rest NaN, so
    not drawn): the left one upright at x = 20, the right one at x = 80."""
    from openhmr.body.keypoints import get_set

    names = get_set("lsp14").names
    kp = np.full((len(names), 2), np.nan)
    kp[names.index("left_knee")] = (20.5, 20.5)
    kp[names.index("left_ankle")] = (20.5, height - 20 + 0.5)
    kp[names.index("right_knee")] = (80.5, 20.5)
    kp[names.index("right_ankle")] = (80.5, height - 20 + 0.5)
    return kp


def test_skeleton_bones_are_coloured_by_side() -> None:
    """A bone's colour says which side of the body it is on: the middle of
    the left shin (well away from its joint dots) is the left colour (blue)
    and the middle of the right shin the right colour (red), so a figure's
    left and right cannot be mistaken for each other."""
    from openhmr.visualize import _LEFT, _RIGHT, draw_skeleton

    assert _LEFT != _RIGHT
    blank = np.zeros((100, 100, 3), np.uint8)
    out = draw_skeleton(blank, _lsp14_legs(), "lsp14", radius=3.0)
    assert out.shape == blank.shape and out.dtype == np.uint8
    assert tuple(int(c) for c in out[50, 20]) == _LEFT
    assert tuple(int(c) for c in out[50, 80]) == _RIGHT
    assert tuple(int(c) for c in out[50, 50]) == (0, 0, 0)  # nothing between the legs
    np.testing.assert_array_equal(blank, 0)  # drawn on a copy


def test_skeleton_skips_keypoints_marked_not_visible() -> None:
    """``visible=False`` hides a keypoint: no dot where it is and none of its
    bones, while a visible keypoint's dot and bones are drawn. With the left
    ankle hidden, the left shin and the left ankle's dot are absent (blank
    pixels) and the left knee's dot, the right shin and the right ankle's
    dot are there."""
    from openhmr.body.keypoints import get_set
    from openhmr.visualize import _LEFT, _RIGHT, draw_skeleton

    names = get_set("lsp14").names
    kp = _lsp14_legs()
    visible = np.ones(len(names), bool)
    visible[names.index("left_ankle")] = False
    blank = np.zeros((100, 100, 3), np.uint8)
    out = draw_skeleton(blank, kp, "lsp14", visible=visible, radius=3.0)
    assert not out[35:, 10:31].any()  # the left shin's lower part and the ankle's dot
    assert tuple(int(c) for c in out[20, 20]) == _LEFT  # the left knee's dot
    assert tuple(int(c) for c in out[50, 80]) == _RIGHT  # the right shin
    assert tuple(int(c) for c in out[80, 80]) == _RIGHT  # the right ankle's dot
    everything = draw_skeleton(blank, kp, "lsp14", visible=np.ones(len(names), bool), radius=3.0)
    assert tuple(int(c) for c in everything[50, 20]) == _LEFT
    assert tuple(int(c) for c in everything[80, 20]) == _LEFT
