"""Known-answer tests of HMR's losses and their batch-global normalisations."""

from __future__ import annotations

import math

import pytest
import torch

from openhmr.geometry import axis_angle_to_matrix
from openhmr.losses import (
    align_by_pelvis,
    d_loss,
    d_loss_terms,
    e_adv_loss,
    joints3d_loss,
    keypoint_l1,
    smpl_param_loss,
)


def test_keypoint_l1_hand_computed():
    pred = torch.tensor([[[0.0, 0.0], [1.0, 1.0]], [[0.5, -0.5], [0.2, 0.2]]])
    gt = torch.tensor([[[0.1, -0.2, 1.0], [5.0, 5.0, 0.0]], [[0.5, 0.5, 1.0], [0.0, 0.0, 1.0]]])
    # visible: (0,0): |0.1|+|-0.2| = 0.3; (1,0): 0+1 = 1.0; (1,1): 0.2+0.2 = 0.4
    # three visible keypoints in the batch → denominator 2·3 = 6
    expected = (0.3 + 1.0 + 0.4) / 6.0
    assert keypoint_l1(pred, gt).item() == pytest.approx(expected, abs=1e-7)


def test_keypoint_l1_is_batch_global_not_per_sample_mean():
    pred = torch.zeros(2, 3, 2)
    gt = torch.zeros(2, 3, 3)
    gt[0, :, 2] = 1.0  # sample 0: 3 visible points, each off by (1, 0)
    gt[0, :, 0] = 1.0
    gt[1, 0, 2] = 1.0  # sample 1: 1 visible point, off by (0, 4)
    gt[1, 0, 1] = 4.0
    global_value = (3 * 1.0 + 4.0) / (2 * 4)
    per_sample_mean = 0.5 * (3 * 1.0 / 6 + 4.0 / 2)
    got = keypoint_l1(pred, gt).item()
    assert got == pytest.approx(global_value, abs=1e-7)
    assert abs(got - per_sample_mean) > 0.1


def test_keypoint_l1_no_visible_points_is_zero_with_finite_gradient():
    pred = torch.randn(3, 19, 2, requires_grad=True)
    gt = torch.zeros(3, 19, 3)
    loss = keypoint_l1(pred, gt)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() == 0


def test_align_by_pelvis_puts_hip_midpoint_at_origin():
    joints = torch.randn(4, 14, 3)
    aligned = align_by_pelvis(joints)
    pelvis = 0.5 * (aligned[:, 2] + aligned[:, 3])
    assert torch.allclose(pelvis, torch.zeros(4, 3), atol=1e-6)
    assert torch.allclose(aligned[:, 5] - aligned[:, 7], joints[:, 5] - joints[:, 7], atol=1e-6)


def test_joints3d_loss_hand_computed_and_translation_invariant():
    gt = torch.zeros(3, 14, 3)
    pred = torch.zeros(3, 14, 3)
    pred[0, 0, 0] = 1.0  # sample 0: one joint off by 1 m → squared error 1
    pred[1, 5, 1] = 2.0  # sample 1: off by 2 m, but unlabelled
    pred[2, 7, 2] = 3.0  # sample 2: off by 3 m → squared error 9
    has = torch.tensor([True, False, True])
    expected = 0.5 * (1.0 + 9.0) / (42 * 2)
    assert joints3d_loss(pred, gt, has).item() == pytest.approx(expected, abs=1e-7)
    shifted = gt + torch.tensor([0.3, -1.0, 5.0])
    assert joints3d_loss(pred, shifted, has).item() == pytest.approx(expected, abs=1e-6)


def test_joints3d_loss_aligns_by_pelvis_not_by_mean():
    gt = torch.zeros(1, 14, 3)
    pred = torch.zeros(1, 14, 3)
    pred[0, 2, 0] = 0.2  # move the right hip: the pelvis shifts by 0.1 in x
    # after alignment: joint 2 at +0.1, all 13 others at −0.1 → Σ = 14·0.01
    expected = 0.5 * 14 * 0.01 / 42
    assert joints3d_loss(pred, gt, torch.ones(1)).item() == pytest.approx(expected, abs=1e-7)


def test_3d_losses_are_zero_without_labels():
    pred = torch.randn(2, 14, 3, requires_grad=True)
    assert joints3d_loss(pred, torch.randn(2, 14, 3), torch.zeros(2)).item() == 0.0
    rot = axis_angle_to_matrix(torch.randn(2, 24, 3))
    assert smpl_param_loss(rot, torch.randn(2, 10), torch.randn(2, 72), torch.randn(2, 10), torch.zeros(2)).item() == 0.0


def test_smpl_param_loss_equals_direct_rotation_matrix_computation():
    gen = torch.Generator().manual_seed(0)
    batch = 5
    pred_pose = torch.randn(batch, 72, generator=gen, dtype=torch.float64)
    pred_rot = axis_angle_to_matrix(pred_pose.reshape(batch, 24, 3))
    pred_betas = torch.randn(batch, 10, generator=gen, dtype=torch.float64)
    gt_pose = torch.randn(batch, 72, generator=gen, dtype=torch.float64)
    gt_betas = torch.randn(batch, 10, generator=gen, dtype=torch.float64)
    has = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64)

    gt_rot = axis_angle_to_matrix(gt_pose.reshape(batch, 24, 3))
    total = 0.0
    for b in range(batch):
        if has[b]:
            p = torch.cat([pred_rot[b].reshape(-1), pred_betas[b]])
            g = torch.cat([gt_rot[b].reshape(-1), gt_betas[b]])
            assert p.numel() == 226
            total += float(((p - g) ** 2).sum())
    expected = 0.5 * total / (226 * 3)
    got = smpl_param_loss(pred_rot, pred_betas, gt_pose, gt_betas, has).item()
    assert got == pytest.approx(expected, rel=1e-12)
    # rotation-matrix ground truth gives the same value
    assert smpl_param_loss(pred_rot, pred_betas, gt_rot, gt_betas, has).item() == pytest.approx(expected, rel=1e-12)


def test_smpl_param_loss_includes_the_global_rotation():
    rot = torch.eye(3).expand(1, 24, 3, 3).clone()
    betas = torch.zeros(1, 10)
    gt = torch.zeros(1, 72)
    gt[0, 0] = math.pi  # only the root differs: R = diag(1, −1, −1)
    # ‖I − diag(1,−1,−1)‖² = 8
    expected = 0.5 * 8.0 / 226
    assert smpl_param_loss(rot, betas, gt, betas, torch.ones(1)).item() == pytest.approx(expected, abs=1e-6)


def test_smpl_param_loss_dimension_follows_body_model():
    joints, k = 5, 3
    rot = torch.eye(3).expand(2, joints, 3, 3).clone()
    betas = torch.zeros(2, k)
    gt_betas = torch.ones(2, k)
    expected = 0.5 * (2 * k) / ((9 * joints + k) * 2)
    got = smpl_param_loss(rot, betas, torch.zeros(2, 3 * joints), gt_betas, torch.ones(2)).item()
    assert got == pytest.approx(expected, abs=1e-6)


def test_lsgan_values():
    real = torch.full((6, 25), 0.5)
    fake = torch.full((6, 25), 0.2)
    r, f = d_loss_terms(real, fake)
    assert r.item() == pytest.approx(25 * 0.25, abs=1e-6)
    assert f.item() == pytest.approx(25 * 0.04, abs=1e-6)
    assert d_loss(real, fake).item() == pytest.approx(25 * 0.29, abs=1e-6)
    assert e_adv_loss(fake).item() == pytest.approx(25 * 0.64, abs=1e-6)
    # a perfect discriminator: real → 1, fake → 0
    assert d_loss(torch.ones(3, 25), torch.zeros(3, 25)).item() == 0.0
    # the mean runs over rows, the sum over the 25 outputs
    mixed = torch.zeros(2, 25)
    mixed[0, :] = 1.0
    assert e_adv_loss(mixed).item() == pytest.approx(25 / 2, abs=1e-6)
