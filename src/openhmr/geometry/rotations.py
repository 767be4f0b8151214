"""Rotation representations: axis-angle, rotation matrices and the 6D form.

All functions are batched over leading dimensions, differentiable, and keep
the input's device and dtype.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

# HMR's batch_rodrigues adds this to every component of theta before taking
# the norm (not to the norm), so a zero rotation gets a tiny finite axis
# instead of 0/0. We reproduce it so converted weights give the same outputs.
HMR_RODRIGUES_EPS = 1e-8


def skew(v: Tensor) -> Tensor:
    """Cross-product matrices [v]x of vectors ``(..., 3)`` → ``(..., 3, 3)``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(axis_angle: Tensor, eps: float = HMR_RODRIGUES_EPS) -> Tensor:
    """Rodrigues' formula, exactly as HMR's ``batch_rodrigues``.

    angle = ‖θ + eps‖ (eps added to each component), r = θ / angle,
    R = cos·I + (1 − cos)·r rᵀ + sin·[r]×. With the default eps the result
    differs from the exact rotation by O(1e-8) near θ = 0, as in the original;
    pass ``eps=0`` only for inputs known to be away from zero. float16
    inputs are computed in float32 (eps is 0 in float16) and returned in
    float16.

    Args:
        axis_angle: (..., 3) rotation vectors, radians.
    Returns:
        (..., 3, 3) rotation matrices.
    """
    if axis_angle.dtype == torch.float16:
        # eps underflows to 0 in half precision: a zero rotation would be 0 / 0.
        return axis_angle_to_matrix(axis_angle.float(), eps).half()
    angle = torch.linalg.vector_norm(axis_angle + eps, dim=-1, keepdim=True)
    axis = axis_angle / angle
    cos = torch.cos(angle).unsqueeze(-1)
    sin = torch.sin(angle).unsqueeze(-1)
    outer = axis.unsqueeze(-1) * axis.unsqueeze(-2)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return cos * eye + (1 - cos) * outer + sin * skew(axis)


def matrix_to_axis_angle(matrix: Tensor) -> Tensor:
    """Inverse of :func:`axis_angle_to_matrix`, stable over the whole range.

    Uses the quaternion route: the quaternion is recovered from whichever of
    w, x, y, z is largest (Shepperd's method), so angles near 0 and near π are
    both well conditioned, then θ = 2·atan2(‖v‖, w)·v/‖v‖ with a series for
    small ‖v‖. The returned angle lies in [0, π].

    Args:
        matrix: (..., 3, 3) rotation matrices.
    Returns:
        (..., 3) rotation vectors, radians.
    """
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def matrix_to_quaternion(matrix: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrices → (..., 4) unit quaternions (w, x, y, z), w ≥ 0."""
    m = matrix
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # Four candidate (unnormalised) quaternions, each exact and best
    # conditioned when its own leading component is the largest.
    cands = torch.stack(
        [
            torch.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
            torch.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
            torch.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
            torch.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
        ],
        dim=-2,
    )  # (..., 4 candidates, 4)
    diag = torch.stack([m00 + m11 + m22, m00, m11, m22], -1)
    lead = torch.stack([diag[..., 0], 2 * m00 - diag[..., 0], 2 * m11 - diag[..., 0],
                        2 * m22 - diag[..., 0]], -1)
    best = lead.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_axis_angle(quaternion: Tensor) -> Tensor:
    """(..., 4) unit quaternions (w, x, y, z) → (..., 3) rotation vectors, of
    angle ≤ π (q and −q are the same rotation)."""
    quaternion = torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)
    w, v = quaternion[..., :1], quaternion[..., 1:]
    sin_half = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    half = torch.atan2(sin_half, w)
    small = sin_half < 1e-6
    # θ/sin(θ/2) → 2/w·(1 + (θ/2)²/6 …) as sin(θ/2) → 0; avoids 0/0.
    safe = torch.where(small, torch.ones_like(sin_half), sin_half)
    factor = torch.where(small, 2.0 / w.clamp_min(1e-12) * (1 + half**2 / 6), 2 * half / safe)
    return v * factor


def axis_angle_to_quaternion(axis_angle: Tensor) -> Tensor:
    """(..., 3) rotation vectors → (..., 4) unit quaternions (w, x, y, z)."""
    angle = torch.linalg.vector_norm(axis_angle, dim=-1, keepdim=True)
    half = angle / 2
    small = angle < 1e-6
    safe = torch.where(small, torch.ones_like(angle), angle)
    factor = torch.where(small, 0.5 - angle**2 / 48, torch.sin(half) / safe)
    return torch.cat([torch.cos(half), axis_angle * factor], dim=-1)


def rot6d_to_matrix(rot6d: Tensor) -> Tensor:
    """Zhou et al.'s continuous 6D representation → rotation matrices.

    The 6 values are the first two columns of the matrix; Gram–Schmidt turns
    them into an orthonormal frame.

    Args:
        rot6d: (..., 6), laid out as (a1, a2) with a1 = values [0:3] the first
            column and a2 = values [3:6] the second.
    Returns:
        (..., 3, 3) rotation matrices.
    """
    a1, a2 = rot6d[..., :3], rot6d[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rot6d(matrix: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrices → (..., 6): the first two columns."""
    return torch.cat([matrix[..., :, 0], matrix[..., :, 1]], dim=-1)


def nearest_rotation(matrix: Tensor, iterations: int = 7) -> Tensor:
    """The rotation nearest to each 3×3 matrix M (Frobenius norm): the R that
    maximises tr(Rᵀ M), i.e. Procrustes' rotation, and for det M > 0 the
    orthogonal factor of the polar decomposition M = R·H.

    For det M > 0 it runs the scaled Newton iteration R ← ½(γR + (γR)⁻ᵀ),
    γ = |det R|^(−1/3) (Higham, 1986), which reaches round-off from a
    condition number of 200 in six steps, and differentiates R exactly in
    closed form (:class:`_PolarRotation`) — a few batched 3×3 products where
    an SVD or an eigen-solver costs a LAPACK call per matrix: the body
    fitter takes rest orientations of 88 Anny bones this way at every step.
    A matrix with det M ≤ 0, a nearly singular one (|det M| ≤ 10³·eps·‖M‖³,
    whose determinant's sign round-off may flip), or one the iteration has
    not brought to a rotation, takes the SVD route instead (R = U·diag(1, 1, det UVᵀ)·Vᵀ),
    alone: the SVD's gradient is NaN for a matrix of repeated singular
    values (any rotation), so the rest of the batch keeps the closed form.

    Args:
        matrix: (..., 3, 3).
        iterations: Newton steps before the convergence check.
    Returns:
        (..., 3, 3) rotation matrices (det +1), the input's dtype and device;
        NaN for a matrix holding NaN or infinity.
    """
    rotation = _PolarRotation.apply(matrix, iterations)
    if rotation.numel() == 0:
        return rotation
    # One check of the result: for det M < 0 the iteration converges to an
    # orthogonal matrix of det −1, for det M = 0 it gives NaN (the check fails).
    # A nearly singular M is sent to the SVD too: the iteration's first
    # determinant, by cofactors, is accurate only to ~eps·‖M‖³, and with the
    # wrong sign the iteration ends at a rotation 180° from the nearest one,
    # which passes the check (float32, singular values 1, 1e-3, 1e-6).
    r, m = rotation.detach(), matrix.detach()
    eps = torch.finfo(r.dtype).eps
    eye = torch.eye(3, dtype=r.dtype, device=r.device)
    gap = (r.transpose(-1, -2) @ r - eye).abs().amax((-2, -1))
    size = m.square().sum((-2, -1)).sqrt()
    c0, c1, c2 = m.unbind(-1)
    det_m = (c0 * torch.linalg.cross(c1, c2, dim=-1)).sum(-1)
    singular = det_m.abs() <= 1e3 * eps * size.pow(3)
    bad = ~((gap <= 100 * eps) & (torch.linalg.det(r) > 0) & ~singular)
    if not bool(bad.any()):
        return rotation
    # The closed form again with the identity in the bad matrices' places, so that their
    # NaN or wrong factor reaches neither the result nor the gradient.
    rotation = _PolarRotation.apply(torch.where(bad[..., None, None], eye, matrix), iterations)
    flat_bad = bad.reshape(-1)  # a single matrix too: its mask is then a 0-d tensor
    chosen = matrix.reshape(-1, 3, 3)[flat_bad]
    # A NaN or infinite matrix has no nearest rotation (NaN), and the SVD would raise on it.
    finite = torch.isfinite(chosen).all(-1).all(-1)
    u, _, vh = torch.linalg.svd(torch.where(finite[:, None, None], chosen, eye))
    sign = torch.linalg.det(u @ vh).sign()
    flip = torch.cat([torch.ones_like(u[..., 0, :2]), sign[..., None]], -1)
    nearest = torch.where(finite[:, None, None], (u * flip[..., None, :]) @ vh, torch.nan)
    fallback = eye.expand(flat_bad.shape[0], 3, 3).clone().index_put((flat_bad,), nearest)
    return torch.where(bad[..., None, None], fallback.reshape(rotation.shape), rotation)


class _PolarRotation(torch.autograd.Function):
    """R, the orthogonal polar factor of M (det M > 0), and its gradient.

    With M = R·H (H symmetric positive definite), dR = R·Ω with Ω skew and
    H·Ω + Ω·H = Rᵀ·dM − dMᵀ·R; for Ω = [ω]×, H·Ω + Ω·H = [(tr H·I − H)·ω]×.
    So for a loss L with G = ∂L/∂R: ∂L/∂M = 2·R·[b]×, where
    b = (tr H·I − H)⁻¹·vex(skew(Rᵀ·G)). The backward is built of
    differentiable operations on M and R, so second derivatives (the
    fitter's Newton steps) come through as well.
    """

    @staticmethod
    def forward(ctx: Any, matrix: Tensor, iterations: int) -> Tensor:
        r = matrix
        for _ in range(iterations):
            # Columns of the cofactor matrix: cof(R) = det(R)·R⁻ᵀ.
            c0, c1, c2 = r.unbind(-1)
            cof = torch.stack([torch.linalg.cross(c1, c2, dim=-1),
                               torch.linalg.cross(c2, c0, dim=-1),
                               torch.linalg.cross(c0, c1, dim=-1)], -1)
            det = (c0 * cof[..., 0]).sum(-1)[..., None, None]
            gamma = det.abs().pow(-1.0 / 3.0)
            r = 0.5 * (gamma * r + cof / (gamma * det))
        ctx.save_for_backward(matrix, r)
        return r

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        matrix, r = ctx.saved_tensors
        h = r.transpose(-1, -2) @ matrix
        h = 0.5 * (h + h.transpose(-1, -2))
        eye = torch.eye(3, dtype=h.dtype, device=h.device)
        k = h.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None] * eye - h
        a = r.transpose(-1, -2) @ grad
        vex = 0.5 * torch.stack([a[..., 2, 1] - a[..., 1, 2], a[..., 0, 2] - a[..., 2, 0],
                                 a[..., 1, 0] - a[..., 0, 1]], -1)
        b = torch.linalg.solve(k, vex.unsqueeze(-1)).squeeze(-1)
        return 2.0 * r @ skew(b), None
