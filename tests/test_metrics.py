"""Known-answer tests of openhmr.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from openhmr import metrics as M


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


@pytest.fixture
def skeletons() -> np.ndarray:
    """(8, 14, 3) random skeletons, millimetres."""
    return np.random.default_rng(0).normal(scale=300.0, size=(8, 14, 3))


def test_pa_mpjpe_is_zero_for_a_similar_copy(skeletons):
    rng = np.random.default_rng(1)
    pred = np.stack([
        2.7 * g @ random_rotation(rng).T + rng.normal(scale=500.0, size=3) for g in skeletons
    ])
    assert M.pa_mpjpe(pred, skeletons).max().item() <= 1e-6
    assert M.mpjpe(pred, skeletons).min().item() > 10.0  # not trivially aligned


def test_mpjpe_of_constructed_offsets(skeletons):
    d = np.array([30.0, -40.0, 0.0])  # |d| = 50 mm
    # A translation of the whole skeleton is removed by pelvis alignment.
    assert M.mpjpe(skeletons + d, skeletons).max().item() == pytest.approx(0.0, abs=1e-9)
    # Moving every joint but the hips: 12 of 14 joints are 50 mm off.
    pred = skeletons.copy()
    pred[:, [0, 1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]] += d
    np.testing.assert_allclose(M.mpjpe(pred, skeletons).numpy(), 50.0 * 12 / 14, atol=1e-9)
    # Moving one hip moves the pelvis by d/2: that hip and the other 13 joints are 25 mm off.
    pred = skeletons.copy()
    pred[:, 2] += d
    np.testing.assert_allclose(M.mpjpe(pred, skeletons).numpy(), 25.0, atol=1e-9)
    # With joint 0 as the pelvis, moving joint 0 moves all others by -d relative to it.
    pred = skeletons.copy()
    pred[:, 0] += d
    np.testing.assert_allclose(M.mpjpe(pred, skeletons, pelvis=0).numpy(), 50.0 * 13 / 14,
                               atol=1e-9)
    # Without alignment the raw error is measured.
    np.testing.assert_allclose(M.mpjpe(skeletons + d, skeletons, pelvis=None).numpy(), 50.0)


def test_torch_and_numpy_inputs_agree(skeletons):
    pred = skeletons + np.random.default_rng(2).normal(scale=20.0, size=skeletons.shape)
    a = M.pa_mpjpe(pred, skeletons)
    b = M.pa_mpjpe(torch.as_tensor(pred, dtype=torch.float32), torch.as_tensor(skeletons))
    assert a.dtype == torch.float64
    torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-5)


def test_procrustes_matches_scipy_reference(skeletons):
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(3)
    pred = np.stack([0.8 * g @ random_rotation(rng).T + 100.0 for g in skeletons])
    pred += rng.normal(scale=40.0, size=pred.shape)  # noise: the fit is not exact
    ours = M.pa_joint_errors(pred, skeletons).numpy()
    for b in range(len(skeletons)):
        x = pred[b] - 0.5 * (pred[b, 2] + pred[b, 3])
        y = skeletons[b] - 0.5 * (skeletons[b, 2] + skeletons[b, 3])
        xc, yc = x - x.mean(0), y - y.mean(0)
        rot, _ = Rotation.align_vectors(yc, xc)  # proper rotation taking xc onto yc
        rx = rot.apply(xc)
        scale = (yc * rx).sum() / (xc**2).sum()
        aligned = scale * rx + y.mean(0)
        np.testing.assert_allclose(ours[b], np.linalg.norm(aligned - y, axis=1), atol=1e-6)


def test_procrustes_never_reflects():
    rng = np.random.default_rng(4)
    gt = rng.normal(scale=300.0, size=(1, 14, 3))
    mirrored = gt * np.array([-1.0, 1.0, 1.0])  # a reflection cannot be undone by a rotation
    assert M.pa_mpjpe(mirrored, gt).item() > 1.0


def test_pck3d_and_auc_hand_computed():
    # Root at joint 0; the other joints off along x by these errors (mm).
    errors = np.array([0.0, 3.0, 7.0, 149.0, 150.0, 200.0])
    gt = np.zeros((1, 6, 3))
    gt[0, :, 1] = np.arange(6) * 100.0
    pred = gt.copy()
    pred[0, :, 0] += errors
    # strict "<": 0, 3, 7 and 149 are below 150; 150 and 200 are not.
    assert M.pck3d(pred, gt, pelvis=0).item() == pytest.approx(4 / 6)
    # thresholds 0..150 step 5: t=0 → 0 (0 is not < 0), t=5 → 2, t=10..145 (28) → 3, t=150 → 4
    assert M.auc3d(pred, gt, pelvis=0).item() == pytest.approx((0 + 2 + 28 * 3 + 4) / (31 * 6))
    assert len(M.AUC_THRESHOLDS_MM) == 31 and M.AUC_THRESHOLDS_MM[-1] == 150.0
    # Joint selection.
    assert M.pck3d(pred, gt, pelvis=0, joints=[4, 5]).item() == 0.0
    np.testing.assert_allclose(M.pck_from_errors(errors[None]).numpy(), [4 / 6])


def test_pck2d_hand_computed():
    gt = np.zeros((2, 14, 2))
    gt[:, 9] = [0.0, 0.0]
    gt[:, 2] = [30.0, 40.0]  # torso diameter 50 px → threshold 10 px at alpha 0.2
    pred = gt.copy()
    pred[0, 0] += [6.0, 8.0]     # exactly 10 px: correct (<=)
    pred[0, 1] += [10.0, 0.1]    # just over: wrong
    pred[1, 5] += [100.0, 0.0]   # wrong but invisible: not scored
    visible = np.ones((2, 14), bool)
    visible[1, 5] = False
    ref = M.reference_length(gt)
    np.testing.assert_allclose(ref.numpy(), [50.0, 50.0])
    correct, vis = M.pck2d_correct(pred, gt, ref, visible)
    assert int(vis.sum()) == 27 and int(correct.sum()) == 26
    assert not correct[1, 5] and correct[0, 0] and not correct[0, 1]
    assert M.pck2d(pred, gt, ref, visible) == pytest.approx(26 / 27)
    with pytest.raises(ValueError):
        M.pck2d(pred, gt, ref, np.zeros((2, 14)))
    # a (B, 1) reference would broadcast to (B, B, K) decisions and a "fraction" above 1
    with pytest.raises(ValueError, match=r"reference must be \(B,\)"):
        M.pck2d(pred, gt, ref[:, None], visible)
    with pytest.raises(ValueError, match=r"visible \(B, K\)"):
        M.pck2d_correct(pred, gt, ref, visible[:, :5])


def test_pve_aligns_each_mesh_by_its_own_pelvis():
    rng = np.random.default_rng(5)
    gt_v = rng.normal(scale=300.0, size=(3, 50, 3))
    gt_j = rng.normal(scale=300.0, size=(3, 14, 3))
    shift = np.array([100.0, -20.0, 5.0])
    assert M.pve(gt_v + shift, gt_v, gt_j + shift, gt_j).max().item() == pytest.approx(0.0, abs=1e-9)
    d = np.array([0.0, 0.0, 12.0])
    np.testing.assert_allclose(M.pve(gt_v + d, gt_v, gt_j, gt_j).numpy(), 12.0, atol=1e-9)
    with pytest.raises(ValueError, match="joints are for 1 bodies, the vertices for 3"):
        M.pve(gt_v, gt_v, gt_j[:1], gt_j[:1])


def test_group_stats_means_of_subgroup_means():
    values = np.array([1.0, 3.0, 10.0, 20.0, 30.0, 100.0])
    groups = ["a", "a", "a", "a", "a", "b"]
    subgroups = ["a1", "a1", "a2", "a2", "a2", "b1"]
    pooled = M.group_stats(values, groups)
    assert pooled["a"] == M.Stats(5, 64.0 / 5, 10.0)
    nested = M.group_stats(values, groups, subgroups)
    assert nested["a"].mean == pytest.approx((2.0 + 20.0) / 2)
    assert nested["a"].median == 10.0 and nested["a"].count == 5
    assert list(nested) == ["a", "b"]
    assert M.mean_over_groups(nested) == pytest.approx((11.0 + 100.0) / 2)
    assert math.isnan(M.summarise(np.zeros(0)).mean)


def test_shape_mismatch_is_refused(skeletons):
    with pytest.raises(ValueError):
        M.mpjpe(skeletons[:, :13], skeletons)
