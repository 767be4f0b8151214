"""Pose and mesh error metrics of the 3D human benchmarks, batched in torch.

Every function takes (B, K, 3) torch tensors or numpy arrays (computed in
float64) and returns per-sample values as a torch tensor, so that breakdowns
(per action, per sequence) and pooled statistics are made from the same
numbers. The functions are unit-preserving: feed millimetres (the protocols
in :mod:`openhmr.evaluate` do, multiplying metres by 1000 as HMR does) and the
errors come out in millimetres; the 3D thresholds are in millimetres.

Definitions (HMR_REFERENCE §12 for the first two):

* **MPJPE**: translate prediction and ground truth so that their pelvis is at
  the origin, then average the Euclidean joint errors. The pelvis is one joint
  index, or the midpoint of two (HMR: LSP-14 hips, indices 2 and 3).
* **PA-MPJPE**: pelvis-align both (as HMR does; a similarity transform
  absorbs any translation, so this does not change the result), fit the
  least-squares similarity transform (rotation, isotropic scale,
  translation) of the prediction onto the truth, then average the joint
  errors.
* **PVE**: mean per-vertex Euclidean error after translating each mesh by its
  own pelvis (taken from the joints that come with it), so that PVE, like
  MPJPE, leaves out the global translation (SPIN's shape error on UP-3D
  compares the meshes unaligned).
* **3DPCK / AUC** (MPI-INF-3DHP's ``mpii_compute_3d_pck.m``): after root
  alignment, the fraction of joints whose error is strictly below 150 mm;
  AUC is the mean of that fraction over the 31 thresholds 0, 5, ..., 150 mm.
* **2D PCK**: the fraction of *visible* joints whose image-plane error is at
  most ``alpha`` times a per-sample reference length (for LSP: PCK@0.2 of the
  torso diameter, the distance from the left shoulder to the right hip).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from openhmr.geometry.procrustes import procrustes_align

# LSP-14 (and HMR's cocoplus-19) hips: the pelvis is their midpoint (§4.3).
LSP_PELVIS: tuple[int, int] = (2, 3)
# LSP-14 left shoulder and right hip: the torso diameter of LSP PCK.
LSP_TORSO: tuple[int, int] = (9, 2)
# MPI-INF-3DHP's PCK: 150 mm, and the AUC curve 0:5:150 mm (31 thresholds).
PCK3D_THRESHOLD_MM = 150.0
AUC_THRESHOLDS_MM: tuple[float, ...] = tuple(float(t) for t in range(0, 151, 5))

Pelvis = int | tuple[int, int] | None
ArrayLike = Tensor | np.ndarray


def as_tensor(x: ArrayLike) -> Tensor:
    """A float64 torch view of ``x`` (numpy or torch), on ``x``'s device."""
    if isinstance(x, Tensor):
        return x.detach().to(torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _check_pair(pred: Tensor, gt: Tensor) -> None:
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(
            f"prediction and ground truth must both be (B, K, D), got {tuple(pred.shape)} "
            f"and {tuple(gt.shape)}"
        )


def pelvis_of(points: ArrayLike, pelvis: Pelvis) -> Tensor:
    """(B, D) pelvis of (B, K, D) points: one joint, the midpoint of two, or zeros."""
    p = as_tensor(points)
    if pelvis is None:
        return p.new_zeros(p.shape[0], p.shape[2])
    if isinstance(pelvis, int):
        return p[:, pelvis]
    a, b = pelvis
    return 0.5 * (p[:, a] + p[:, b])


def align_by_pelvis(points: ArrayLike, pelvis: Pelvis) -> Tensor:
    """(B, K, D) points translated so that their pelvis is at the origin."""
    p = as_tensor(points)
    return p - pelvis_of(p, pelvis)[:, None]


def joint_errors(pred: ArrayLike, gt: ArrayLike, pelvis: Pelvis = LSP_PELVIS) -> Tensor:
    """(B, K) Euclidean error of each joint after pelvis alignment."""
    p, g = as_tensor(pred), as_tensor(gt)
    _check_pair(p, g)
    return torch.linalg.norm(align_by_pelvis(p, pelvis) - align_by_pelvis(g, pelvis), dim=-1)


def pa_joint_errors(pred: ArrayLike, gt: ArrayLike, pelvis: Pelvis = LSP_PELVIS) -> Tensor:
    """(B, K) Euclidean error of each joint after similarity Procrustes alignment."""
    p, g = as_tensor(pred), as_tensor(gt)
    _check_pair(p, g)
    p, g = align_by_pelvis(p, pelvis), align_by_pelvis(g, pelvis)
    return torch.linalg.norm(procrustes_align(p, g) - g, dim=-1)


def mpjpe(pred: ArrayLike, gt: ArrayLike, pelvis: Pelvis = LSP_PELVIS) -> Tensor:
    """(B,) mean per-joint position error after pelvis alignment (input units)."""
    return joint_errors(pred, gt, pelvis).mean(dim=-1)


def pa_mpjpe(pred: ArrayLike, gt: ArrayLike, pelvis: Pelvis = LSP_PELVIS) -> Tensor:
    """(B,) mean per-joint error after similarity Procrustes (input units)."""
    return pa_joint_errors(pred, gt, pelvis).mean(dim=-1)


def pve(
    pred_vertices: ArrayLike,
    gt_vertices: ArrayLike,
    pred_joints: ArrayLike,
    gt_joints: ArrayLike,
    pelvis: Pelvis = LSP_PELVIS,
) -> Tensor:
    """(B,) mean per-vertex error after pelvis alignment (input units).

    Each mesh is translated by the pelvis of its own joints, so the
    alignment is the one MPJPE uses; the meshes must share a topology.

    Args:
        pred_vertices, gt_vertices: (B, V, 3).
        pred_joints, gt_joints: (B, K, 3) joints defining each pelvis.
    """
    pv, gv = as_tensor(pred_vertices), as_tensor(gt_vertices)
    _check_pair(pv, gv)
    pj, gj = as_tensor(pred_joints), as_tensor(gt_joints)
    _check_pair(pj, gj)
    if pj.shape[0] != pv.shape[0]:  # another batch's pelvis would broadcast silently
        raise ValueError(f"the joints are for {pj.shape[0]} bodies, the vertices for {pv.shape[0]}")
    pv = pv - pelvis_of(pred_joints, pelvis)[:, None]
    gv = gv - pelvis_of(gt_joints, pelvis)[:, None]
    return torch.linalg.norm(pv - gv, dim=-1).mean(dim=-1)


def pck_from_errors(errors: ArrayLike, threshold: float = PCK3D_THRESHOLD_MM) -> Tensor:
    """(B,) fraction of the (B, K) joint errors strictly below ``threshold``."""
    e = as_tensor(errors)
    return (e < threshold).to(torch.float64).mean(dim=-1)


def auc_from_errors(errors: ArrayLike, thresholds: Sequence[float] = AUC_THRESHOLDS_MM) -> Tensor:
    """(B,) mean over ``thresholds`` of :func:`pck_from_errors` (3DHP: 0, 5, ..., 150 mm)."""
    e = as_tensor(errors)
    t = torch.as_tensor(list(thresholds), dtype=e.dtype, device=e.device)
    return (e[..., None] < t).to(torch.float64).mean(dim=(1, 2))


def pck3d(
    pred: ArrayLike,
    gt: ArrayLike,
    threshold: float = PCK3D_THRESHOLD_MM,
    pelvis: Pelvis = LSP_PELVIS,
    joints: Sequence[int] | None = None,
) -> Tensor:
    """(B,) fraction of joints with error strictly below ``threshold`` after root alignment.

    ``joints`` selects the joints that count (default: all).
    """
    err = joint_errors(pred, gt, pelvis)
    if joints is not None:
        err = err[:, list(joints)]
    return pck_from_errors(err, threshold)


def auc3d(
    pred: ArrayLike,
    gt: ArrayLike,
    thresholds: Sequence[float] = AUC_THRESHOLDS_MM,
    pelvis: Pelvis = LSP_PELVIS,
    joints: Sequence[int] | None = None,
) -> Tensor:
    """(B,) mean of :func:`pck3d` over ``thresholds`` after root alignment."""
    err = joint_errors(pred, gt, pelvis)
    if joints is not None:
        err = err[:, list(joints)]
    return auc_from_errors(err, thresholds)


def reference_length(points: ArrayLike, pair: tuple[int, int] = LSP_TORSO) -> Tensor:
    """(B,) distance between two keypoints of (B, K, D) points (default: LSP torso)."""
    p = as_tensor(points)
    return torch.linalg.norm(p[:, pair[0]] - p[:, pair[1]], dim=-1)


def pck2d_correct(
    pred: ArrayLike,
    gt: ArrayLike,
    reference: ArrayLike,
    visible: ArrayLike,
    alpha: float = 0.2,
) -> tuple[Tensor, Tensor]:
    """Per-joint 2D PCK decisions.

    Args:
        pred, gt: (B, K, 2) image points, pixels.
        reference: (B,) reference length per sample, pixels.
        visible: (B, K) truthy where the ground truth is annotated/visible.
        alpha: fraction of the reference length a joint may be off.
    Returns:
        correct (B, K) bool (False where invisible), and the (B, K) bool
        visibility mask; PCK = correct.sum() / visible.sum().
    """
    p, g = as_tensor(pred), as_tensor(gt)
    _check_pair(p, g)
    ref = as_tensor(reference)
    vis = as_tensor(visible) > 0
    if ref.shape != p.shape[:1] or vis.shape != p.shape[:2]:  # (B, 1) would broadcast to (B, B, K)
        raise ValueError(f"reference must be (B,) and visible (B, K) for {tuple(p.shape[:2])} points, "
                         f"got {tuple(ref.shape)} and {tuple(vis.shape)}")
    dist = torch.linalg.norm(p - g, dim=-1)
    correct = (dist <= alpha * ref[:, None]) & vis
    return correct, vis


def pck2d(
    pred: ArrayLike,
    gt: ArrayLike,
    reference: ArrayLike,
    visible: ArrayLike,
    alpha: float = 0.2,
) -> float:
    """Pooled 2D PCK: correct visible joints over all visible joints, in [0, 1]."""
    correct, vis = pck2d_correct(pred, gt, reference, visible, alpha)
    n = int(vis.sum())
    if n == 0:
        raise ValueError("no visible joint to score")
    return float(correct.sum()) / n


@dataclass(frozen=True)
class Stats:
    """Summary of one group of per-frame values."""

    count: int
    mean: float
    median: float


def summarise(values: ArrayLike) -> Stats:
    """Count, mean and median of (N,) per-frame values."""
    v = as_tensor(values).reshape(-1).cpu().numpy()
    if v.size == 0:
        return Stats(0, float("nan"), float("nan"))
    return Stats(int(v.size), float(v.mean()), float(np.median(v)))


def group_stats(
    values: ArrayLike,
    groups: Sequence[str],
    subgroups: Sequence[str] | None = None,
) -> dict[str, Stats]:
    """Per-group summary of (N,) per-frame values, in order of first appearance.

    With ``subgroups`` (e.g. the sequence of each frame), a group's mean is
    the mean of its subgroups' means, as HMR averages an action's sequences;
    without, it is the mean over the group's frames. The median is always over
    the group's frames.
    """
    v = as_tensor(values).reshape(-1).cpu().numpy()
    if len(groups) != v.size or (subgroups is not None and len(subgroups) != v.size):
        raise ValueError("one group label per value is required")
    labels = np.asarray(groups, dtype=object)
    out: dict[str, Stats] = {}
    for name in dict.fromkeys(groups):
        mask = labels == name
        stats = summarise(v[mask])
        if subgroups is not None:
            sub = np.asarray(subgroups, dtype=object)[mask]
            sub_means = [v[mask][sub == s].mean() for s in dict.fromkeys(sub.tolist())]
            stats = Stats(stats.count, float(np.mean(sub_means)), stats.median)
        out[name] = stats
    return out


def mean_over_groups(stats: dict[str, Stats]) -> float:
    """Unweighted mean of the group means (HMR's "average over actions")."""
    return float(np.mean([s.mean for s in stats.values()]))
