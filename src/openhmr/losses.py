"""HMR's training losses, with the original's normalisations (HMR_REFERENCE §8).

Every loss of the original goes through TensorFlow's ``tf.losses`` with the
default reduction ``SUM_BY_NONZERO_WEIGHTS``: the weighted sum is divided by
the number of non-zero weights *after the weights are broadcast to the loss
shape*, across the whole batch, and a batch with no non-zero weight gives 0
(TF's safe division). That is not torch's ``reduction="mean"`` (quirk Q9), so
each function below states its exact denominator.

Units: 2D keypoints are normalised crop coordinates in [-1, 1]; 3D joints are
metres; rotations are 3×3 matrices flattened row-major.

Totals (§8.4), with the paper's weights (``do_train.sh``):

* encoder: ``d_loss_weight·L_E_adv + e_loss_weight·L_kp + e_3d_weight·(L_smpl + L_j3d)``,
  the 2D and 3D terms from the **last** IEF iteration, the adversarial term
  from all iterations;
* discriminator: ``d_loss_weight·(L_D_real + L_D_fake)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from openhmr.geometry.rotations import axis_angle_to_matrix

# Loss weights of the paper's run (do_train.sh; config.py's defaults differ, Q6).
E_LOSS_WEIGHT = 60.0  # 2D keypoint reprojection
E_3D_WEIGHT = 60.0  # SMPL parameters and 3D joints
D_LOSS_WEIGHT = 1.0  # adversarial prior, for both E and D

# LSP-14 indices of the right and left hip: the pelvis is their midpoint.
RIGHT_HIP, LEFT_HIP = 2, 3


def _safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator, or 0 where the denominator is 0 (TF's ``div_no_nan``)."""
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, numerator / safe, torch.zeros_like(numerator))


def keypoint_l1(pred: Tensor, gt: Tensor) -> Tensor:
    """HMR's ``keypoint_l1_loss``: mean absolute error per visible coordinate.

    L = Σ_{b,k,c} vis_{b,k}·|gt_{b,k,c} − pred_{b,k,c}| / (2·#{(b,k): vis_{b,k} ≠ 0}),

    the count running over the whole batch (not per sample); 0 when nothing is
    visible.

    Args:
        pred: (B, K, 2) predicted keypoints, normalised crop coordinates.
        gt: (B, K, 3) labels (x, y, vis), normalised crop coordinates; the
            visibility is used as a weight (0/1 in HMR's data).
    Returns:
        () scalar loss.
    """
    vis = gt[..., 2:3].to(pred.dtype)
    total = (vis * (gt[..., :2].to(pred.dtype) - pred).abs()).sum()
    count = 2.0 * torch.count_nonzero(vis).to(pred.dtype)
    return _safe_divide(total, count)


def align_by_pelvis(joints: Tensor) -> Tensor:
    """Subtract the pelvis, the midpoint of LSP joints 2 (right hip) and 3 (left hip).

    Args:
        joints: (B, 14, 3) joints in LSP order, metres.
    Returns:
        (B, 14, 3) pelvis-centred joints.
    """
    pelvis = 0.5 * (joints[:, RIGHT_HIP] + joints[:, LEFT_HIP])
    return joints - pelvis[:, None, :]


def _weighted_half_mse(pred: Tensor, gt: Tensor, has: Tensor) -> Tensor:
    """0.5·Σ_b w_b‖p_b − g_b‖² / (D·#{b: w_b ≠ 0}) for (B, D) inputs and (B,) weights.

    ``tf.losses.mean_squared_error`` with per-sample weights broadcast over the
    D values counts D non-zero weights per labelled sample.
    """
    w = has.to(pred.dtype).reshape(-1, 1)
    total = (w * (pred - gt.to(pred.dtype)) ** 2).sum()
    count = pred.shape[1] * torch.count_nonzero(w).to(pred.dtype)
    return 0.5 * _safe_divide(total, count)


def joints3d_loss(pred: Tensor, gt: Tensor, has: Tensor) -> Tensor:
    """HMR's 3D joint loss on 14 pelvis-aligned LSP joints.

    L = 0.5·Σ_b w_b‖align(p_b) − align(g_b)‖² / (42·#{b: w_b ≠ 0}),

    with ``align`` subtracting the midpoint of the hips (LSP 2, 3) and w_b =
    ``has_3d_joints`` (1 for every sample from a 3D dataset). For 0/1 weights
    the denominator is 42·Σw as in the reference; 0 when no sample is labelled.

    Args:
        pred: (B, 14, 3) predicted LSP joints (the first 14 cocoplus joints), metres.
        gt: (B, 14, 3) ground truth, metres (any origin).
        has: (B,) bool or 0/1 weights.
    Returns:
        () scalar loss.
    """
    batch = pred.shape[0]
    p = align_by_pelvis(pred).reshape(batch, -1)
    g = align_by_pelvis(gt.to(pred.dtype)).reshape(batch, -1)
    return _weighted_half_mse(p, g, has)


def smpl_param_loss(
    pred_rotmats: Tensor, pred_betas: Tensor, gt_pose: Tensor, gt_betas: Tensor, has: Tensor
) -> Tensor:
    """HMR's body-parameter loss on rotation matrices and betas (Q4: root included).

    The prediction is concat(R_0..R_{J−1} flattened row-major, β): 9J + k
    values (226 for SMPL with 10 betas). With w_b = ``has_smpl3d``:

    L = 0.5·Σ_b w_b‖p_b − g_b‖² / ((9J + k)·#{b: w_b ≠ 0}); 0 when no sample is labelled.

    Args:
        pred_rotmats: (B, J, 3, 3) predicted joint rotations, the global
            rotation (joint 0) included.
        pred_betas: (B, k) predicted shape parameters.
        gt_pose: (B, 3J) axis-angle ground truth (converted with HMR's
            Rodrigues, as the original's data pipeline does) or (B, J, 3, 3).
        gt_betas: (B, k) ground-truth shape.
        has: (B,) bool or 0/1 weights.
    Returns:
        () scalar loss.
    """
    batch, joints = pred_rotmats.shape[:2]
    if gt_pose.ndim == 2:
        gt_rotmats = axis_angle_to_matrix(gt_pose.to(pred_rotmats.dtype).reshape(batch, joints, 3))
    else:
        gt_rotmats = gt_pose.to(pred_rotmats.dtype)
    pred = torch.cat([pred_rotmats.reshape(batch, 9 * joints), pred_betas.to(pred_rotmats.dtype)], dim=1)
    gt = torch.cat([gt_rotmats.reshape(batch, 9 * joints), gt_betas.to(pred_rotmats.dtype)], dim=1)
    return _weighted_half_mse(pred, gt, has)


def d_loss_terms(real_scores: Tensor, fake_scores: Tensor) -> tuple[Tensor, Tensor]:
    """The two LSGAN terms of the discriminator loss.

    L_D_real = mean_n Σ_k (D_k(real_n) − 1)², L_D_fake = mean_n Σ_k D_k(fake_n)²,
    the sum running over the K outputs (23 joints + all joints + shape = 25
    for SMPL), the mean over the N rows (3B in HMR).

    Args:
        real_scores: (N, K) discriminator outputs on mocap samples.
        fake_scores: (M, K) discriminator outputs on predictions.
    Returns:
        (L_D_real, L_D_fake), two () scalars.
    """
    real = ((real_scores - 1.0) ** 2).sum(dim=1).mean()
    fake = (fake_scores**2).sum(dim=1).mean()
    return real, fake


def d_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """LSGAN discriminator loss L_D_real + L_D_fake (see :func:`d_loss_terms`), unweighted."""
    real, fake = d_loss_terms(real_scores, fake_scores)
    return real + fake


def e_adv_loss(fake_scores: Tensor) -> Tensor:
    """LSGAN encoder (generator) loss: mean_n Σ_k (D_k(fake_n) − 1)².

    Args:
        fake_scores: (M, K) discriminator outputs on predictions of all IEF
            iterations (3B rows in HMR).
    Returns:
        () scalar loss.
    """
    return ((fake_scores - 1.0) ** 2).sum(dim=1).mean()
