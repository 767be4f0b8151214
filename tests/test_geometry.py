import math

import numpy as np
import pytest
import torch

from openhmr.geometry import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    crop_normalised_to_pixels,
    crop_pixels_to_normalised,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    nearest_rotation,
    perspective_project,
    procrustes_align,
    quaternion_to_axis_angle,
    rot6d_to_matrix,
    similarity_transform,
    weak_perspective_project,
    weak_to_perspective_translation,
)

scipy_rotation = pytest.importorskip("scipy.spatial.transform").Rotation


def random_axis_angle(n: int, max_angle: float = math.pi, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1)
    return axis * torch.rand(n, 1, generator=g, dtype=torch.float64) * max_angle


def test_rodrigues_matches_scipy_and_keeps_hmr_epsilon():
    aa = random_axis_angle(500)
    ours = axis_angle_to_matrix(aa)
    ref = torch.from_numpy(scipy_rotation.from_rotvec(aa.numpy()).as_matrix())
    # HMR adds 1e-8 to each component before the norm: the error is O(1e-8).
    assert (ours - ref).abs().max() < 1e-7
    assert (axis_angle_to_matrix(aa, eps=0.0) - ref).abs().max() < 1e-12
    # The epsilon keeps a zero rotation finite (the identity), as in the original.
    zero = axis_angle_to_matrix(torch.zeros(1, 3, dtype=torch.float64))
    assert torch.allclose(zero, torch.eye(3, dtype=torch.float64)[None], atol=1e-12)
    # ...and is really there, as HMR's batch_rodrigues has it: angle ‖θ + 1e-8‖
    # (to every component), axis θ / angle, R = cos·I + (1 − cos)·r rᵀ + sin·[r]×.
    theta = torch.cat([torch.tensor([[0.3, 0.0, 0.0]], dtype=torch.float64), aa[:20]])
    angle = (theta + 1e-8).norm(dim=1, keepdim=True)
    r = theta / angle
    cos, sin = torch.cos(angle)[..., None], torch.sin(angle)[..., None]
    x, y, z = r.unbind(1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], 1).reshape(-1, 3, 3)
    hmr = cos * torch.eye(3, dtype=torch.float64) + (1 - cos) * r[:, :, None] * r[:, None, :] + sin * skew
    torch.testing.assert_close(axis_angle_to_matrix(theta), hmr, rtol=1e-12, atol=1e-15)
    assert (axis_angle_to_matrix(theta) - axis_angle_to_matrix(theta, eps=0.0)).abs().max() > 1e-9



def test_rodrigues_in_half_precision_is_finite_at_zero():
    """HMR's eps (1e-8) is 0 in float16: a zero rotation was 0 / 0, and a half-precision
    body at rest all NaN. float16 is computed in float32 and returned in float16."""
    theta = torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1]])
    half = axis_angle_to_matrix(theta.half())
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), axis_angle_to_matrix(theta), rtol=0, atol=1e-3)

@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-6, 1e-3, 1.0, math.pi - 1e-3, math.pi - 1e-7, math.pi])
def test_round_trip_near_zero_and_pi(angle):
    axes = torch.nn.functional.normalize(torch.randn(64, 3, dtype=torch.float64), dim=-1)
    aa = axes * angle
    m = axis_angle_to_matrix(aa, eps=0.0) if angle > 0 else torch.eye(3, dtype=torch.float64).expand(64, 3, 3)
    back = matrix_to_axis_angle(m)
    # Compare rotations (at π, θ and −θ are the same rotation).
    m2 = axis_angle_to_matrix(back)
    assert (m2 - m).abs().max() < 1e-7
    assert torch.allclose(back.norm(dim=-1), torch.full((64,), angle, dtype=torch.float64), atol=1e-7)
    if angle < math.pi - 1e-3:
        assert (back - aa).abs().max() < 1e-7


def test_matrix_to_axis_angle_matches_scipy():
    aa = random_axis_angle(1000, seed=3)
    m = axis_angle_to_matrix(aa, eps=0.0)
    ref = scipy_rotation.from_matrix(m.numpy()).as_rotvec()
    assert np.abs(matrix_to_axis_angle(m).numpy() - ref).max() < 1e-10


def test_matrix_to_axis_angle_gradient_is_finite_near_identity():
    aa = (random_axis_angle(16) * 1e-7).requires_grad_()
    out = matrix_to_axis_angle(axis_angle_to_matrix(aa, eps=0.0))
    out.sum().backward()
    assert torch.isfinite(aa.grad).all()


def test_rot6d_round_trip_and_orthonormality():
    m = axis_angle_to_matrix(random_axis_angle(200), eps=0.0)
    assert torch.allclose(rot6d_to_matrix(matrix_to_rot6d(m)), m, atol=1e-12)
    r = rot6d_to_matrix(torch.randn(100, 6, dtype=torch.float64))
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(r.transpose(-1, -2) @ r, eye.expand_as(r), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(100, dtype=torch.float64))
    # the layout: the first two columns (Zhou et al.), not rows
    assert torch.equal(matrix_to_rot6d(m)[..., :3], m[..., :, 0])
    assert torch.equal(matrix_to_rot6d(m)[..., 3:], m[..., :, 1])
    six = torch.tensor([[0.0, 2.0, 0.0, -3.0, 1.0, 0.0]], dtype=torch.float64)  # y, then −x once orthogonalised
    expected = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    torch.testing.assert_close(rot6d_to_matrix(six), expected, rtol=0, atol=1e-15)


def test_weak_perspective_adds_translation_before_scaling():
    pts = torch.tensor([[[1.0, 2.0, 5.0]]])
    cam = torch.tensor([[0.5, 0.1, -0.2]])
    assert torch.allclose(weak_perspective_project(pts, cam), torch.tensor([[[0.55, 0.9]]]))


def test_crop_pixel_conversions():
    x = torch.tensor([-1.0, 0.0, 1.0])
    assert torch.allclose(crop_normalised_to_pixels(x), torch.tensor([0.0, 112.0, 224.0]))
    u = torch.rand(50) * 224
    assert torch.allclose(crop_normalised_to_pixels(crop_pixels_to_normalised(u)), u, atol=1e-5)


def test_equivalent_perspective_camera_reproduces_weak_projection_at_depth():
    torch.manual_seed(0)
    cam = torch.tensor([[0.8, 0.05, 0.1], [1.2, -0.1, 0.02]], dtype=torch.float64)
    pts = torch.randn(2, 30, 3, dtype=torch.float64) * 0.5
    pts[..., 2] = 0.0  # points at the reference depth project identically
    weak = crop_normalised_to_pixels(weak_perspective_project(pts, cam))
    trans = weak_to_perspective_translation(cam)
    persp = perspective_project(pts, 500.0, torch.tensor([112.0, 112.0], dtype=torch.float64), trans)
    assert torch.allclose(weak, persp, atol=1e-9)


def scipy_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Independent reference: scipy's orthogonal Procrustes for R, closed-form scale."""
    from scipy.linalg import orthogonal_procrustes

    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    r, _ = orthogonal_procrustes(a, b)  # minimises ‖a r − b‖, may be a reflection
    if np.linalg.det(r) < 0:
        u, s, vt = np.linalg.svd(a.T @ b)
        d = np.diag([1.0, 1.0, -1.0])
        r = u @ d @ vt
    scale = np.trace((a @ r).T @ b) / np.trace(a.T @ a)
    return scale * a @ r + mu_t


def test_procrustes_matches_scipy_reference():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(20, 14, 3))
    tgt = rng.normal(size=(20, 14, 3))
    ours = procrustes_align(torch.from_numpy(src), torch.from_numpy(tgt)).numpy()
    ref = np.stack([scipy_similarity(s, t) for s, t in zip(src, tgt)])
    assert np.abs(ours - ref).max() < 1e-6


def test_procrustes_recovers_similarity_and_is_invariant():
    torch.manual_seed(1)
    x = torch.randn(8, 17, 3, dtype=torch.float64)
    rot = axis_angle_to_matrix(random_axis_angle(8, seed=5), eps=0.0)
    scale = torch.rand(8, dtype=torch.float64) * 2 + 0.5
    trans = torch.randn(8, 3, dtype=torch.float64)
    y = scale[:, None, None] * x @ rot.transpose(1, 2) + trans[:, None]
    s, r, t = similarity_transform(x, y)
    assert torch.allclose(s, scale, atol=1e-10)
    assert torch.allclose(r, rot, atol=1e-10)
    assert torch.allclose(t, trans, atol=1e-10)
    # Aligning a transformed source gives the same result as the original one.
    z = torch.randn(8, 17, 3, dtype=torch.float64)
    assert torch.allclose(procrustes_align(y, z), procrustes_align(x, z), atol=1e-10)


def test_procrustes_never_returns_a_reflection():
    x = torch.randn(4, 10, 3, dtype=torch.float64)
    mirrored = x * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    _, r, _ = similarity_transform(x, mirrored)
    assert torch.allclose(torch.linalg.det(r), torch.ones(4, dtype=torch.float64))


def test_procrustes_of_a_collapsed_source_is_finite():
    """Every source point at one place: scale 0, each point onto the target's
    centroid, so the error is the target's spread (HMR's code gives NaN)."""
    target = torch.randn(2, 14, 3, dtype=torch.float64)
    source = torch.zeros(2, 14, 3, dtype=torch.float64)
    source[1] = 0.3  # away from the origin: centred, it is round-off, not exactly 0
    scale, _, _ = similarity_transform(source, target)
    assert scale[0] == 0 and torch.isfinite(scale).all()
    aligned = procrustes_align(source, target)
    assert torch.allclose(aligned, target.mean(1, keepdim=True).expand_as(target))


def test_quaternion_to_axis_angle_takes_either_sign():
    """q and −q are one rotation: both give the rotation vector of angle ≤ π,
    near the identity too (w ≈ −1), as scipy does."""
    aa = random_axis_angle(64, seed=3)
    aa[:4] *= 1e-8  # next to the identity
    q = axis_angle_to_quaternion(aa)
    for quaternion in (q, -q):
        got = quaternion_to_axis_angle(quaternion)
        want = scipy_rotation.from_quat(quaternion[:, [1, 2, 3, 0]].numpy()).as_rotvec()
        assert np.allclose(got.numpy(), want, atol=1e-12)
    beyond = torch.tensor([[2 * math.pi - 1e-7, 0.0, 0.0]], dtype=torch.float64)  # angle > π: w < 0
    assert torch.allclose(quaternion_to_axis_angle(axis_angle_to_quaternion(beyond)),
                          torch.tensor([[-1e-7, 0.0, 0.0]], dtype=torch.float64), atol=1e-12)


def svd_nearest_rotation(m: np.ndarray) -> np.ndarray:
    """Reference: argmax tr(Rᵀ M) over rotations, by numpy's SVD."""
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def test_nearest_rotation_matches_svd_for_any_determinant():
    g = torch.Generator().manual_seed(3)
    eye = torch.eye(3, dtype=torch.float64)
    # Well and badly conditioned (σ from 0.01 to 3), and some of negative
    # determinant, which must take the SVD route and still give det +1.
    m = torch.cat([torch.randn(40, 3, 3, generator=g, dtype=torch.float64) + 1.5 * eye,
                   torch.randn(40, 3, 3, generator=g, dtype=torch.float64)])
    m[:10] = m[:10] @ torch.diag(torch.tensor([3.0, 1.0, 0.01], dtype=torch.float64))
    ours = nearest_rotation(m)
    ref = np.stack([svd_nearest_rotation(x) for x in m.numpy()])
    assert (torch.linalg.det(m) < 0).any()
    assert np.abs(ours.numpy() - ref).max() < 1e-12
    assert torch.allclose(torch.linalg.det(ours), torch.ones(80, dtype=torch.float64), atol=1e-12)
    assert nearest_rotation(torch.zeros(2, 0, 3, 3)).shape == (2, 0, 3, 3)
    singular = torch.diag(torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64))[None]
    assert torch.allclose(nearest_rotation(singular), eye[None], atol=1e-12)
    positive = m[torch.linalg.det(m) > 0]
    assert (nearest_rotation(positive.float()) - torch.from_numpy(ref)[torch.linalg.det(m) > 0]
            ).abs().max() < 1e-5


def test_nearly_singular_float32_matrices_get_their_nearest_rotation():
    """Singular values (1, 1e-3, 1e-6), det M > 0: in float32 the iteration's
    first determinant may come out negative and end at a rotation 180° from the
    nearest one, det +1 and orthonormal; such matrices take the SVD instead."""
    g = torch.Generator().manual_seed(2)
    u = axis_angle_to_matrix(torch.randn(300, 3, generator=g, dtype=torch.float64))
    v = axis_angle_to_matrix(torch.randn(300, 3, generator=g, dtype=torch.float64))
    m = (u * torch.tensor([1.0, 1e-3, 1e-6], dtype=torch.float64)) @ v
    m32 = m.float()
    ref = np.stack([svd_nearest_rotation(x) for x in m32.double().numpy()])
    assert (np.linalg.det(m32.double().numpy()) > 0).all()
    assert np.abs(nearest_rotation(m32).double().numpy() - ref).max() < 1e-3


def test_a_matrix_holding_nan_has_a_nan_nearest_rotation_and_leaves_the_others():
    g = torch.Generator().manual_seed(4)
    batch = axis_angle_to_matrix(torch.randn(4, 3, generator=g))
    batch[1, 0, 2] = float("nan")
    batch[2, 1, 1] = float("inf")
    out = nearest_rotation(batch)
    assert out[1:3].isnan().all()
    torch.testing.assert_close(out[[0, 3]], batch[[0, 3]], rtol=0, atol=1e-6)


def test_one_matrix_of_negative_determinant_leaves_the_others_gradients_finite():
    """A batch of rotations (repeated singular values, where the SVD's
    gradient is NaN) and one matrix of det < 0: only that one takes the SVD,
    so every gradient is finite and the others' equal those of the batch
    without it (a young Anny body's neck bone made a whole batch's shape
    gradients NaN)."""
    g = torch.Generator().manual_seed(5)
    rotations = axis_angle_to_matrix(torch.randn(6, 3, generator=g, dtype=torch.float64))
    odd = torch.diag(torch.tensor([1.0, 0.5, -0.2], dtype=torch.float64))[None]
    batch = torch.cat([rotations, odd]).requires_grad_(True)
    weights = torch.randn(7, 3, 3, generator=g, dtype=torch.float64)
    (nearest_rotation(batch) * weights).sum().backward()
    assert torch.isfinite(batch.grad).all()
    alone = rotations.clone().requires_grad_(True)
    (nearest_rotation(alone) * weights[:6]).sum().backward()
    torch.testing.assert_close(batch.grad[:6], alone.grad, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(nearest_rotation(batch.detach())[6].numpy(), svd_nearest_rotation(odd[0].numpy()),
                               atol=1e-12)
    # One matrix alone, unbatched (its mask a 0-d tensor), and a batch of other layout.
    np.testing.assert_allclose(nearest_rotation(odd[0]).numpy(), svd_nearest_rotation(odd[0].numpy()), atol=1e-12)
    assert nearest_rotation(batch.detach().reshape(7, 1, 3, 3)).shape == (7, 1, 3, 3)


def test_nearest_rotation_gradients_are_exact_to_second_order():
    # The fitter's Newton steps differentiate it twice.
    g = torch.Generator().manual_seed(4)
    m = torch.randn(5, 3, 3, generator=g, dtype=torch.float64) + 2.0 * torch.eye(3, dtype=torch.float64)
    assert (torch.linalg.det(m) > 0).all()
    m.requires_grad_(True)
    assert torch.autograd.gradcheck(nearest_rotation, (m,))
    assert torch.autograd.gradgradcheck(nearest_rotation, (m,))
