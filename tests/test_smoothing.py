"""openhmr.smoothing: the One-Euro filter and a video's body estimates over time."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.transform import Rotation

from openhmr.data.crop import CropTransform
from openhmr.geometry.rotations import axis_angle_to_matrix
from openhmr.smoothing import (
    BodySmoother,
    OneEuroFilter,
    camera_from_image,
    camera_to_image,
    nearest_rotations,
)

FPS = 30.0


def test_one_euro_smooths_a_still_signal_and_follows_a_moving_one():
    rng = np.random.default_rng(0)
    still = 1.0 + 0.1 * rng.standard_normal(300)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    out = np.array([f(np.array([x]), 1 / FPS)[0] for x in still])
    assert out[0] == still[0]  # the first value passes as it is
    assert out[100:].std() < 0.3 * still[100:].std()
    assert abs(out[100:].mean() - 1.0) < 0.02

    # A ramp at constant speed: the lag behind it is what beta (the speed
    # term) shrinks, One-Euro's reason to be.
    ramp = np.arange(120) / FPS * 2.0  # 2 units per second
    lag = {}
    for beta in (0.0, 2.0):
        f = OneEuroFilter(min_cutoff=1.0, beta=beta)
        out = np.array([f(np.array([x]), 1 / FPS)[0] for x in ramp])
        lag[beta] = ramp[-1] - out[-1]
    assert 0 < lag[2.0] < 0.25 * lag[0.0], lag

    f.reset()
    assert f(np.array([5.0]), 1 / FPS)[0] == 5.0


def test_speed_shared_within_a_group():
    """With speed_axes, all entries of a group get the same cutoff: a still
    entry next to a moving one is let through as fast."""
    grouped, single = OneEuroFilter(1.0, 5.0, speed_axes=1), OneEuroFilter(1.0, 5.0)
    for k in range(30):
        x = np.array([[k / FPS * 3.0, 0.0]])
        g, s = grouped(x, 1 / FPS), single(x, 1 / FPS)
    assert np.allclose(g[:, 1], 0.0) and np.allclose(s[:, 1], 0.0)
    assert abs(g[0, 0] - x[0, 0]) < abs(s[0, 0] - x[0, 0]) + 1e-12  # same entry, same or less lag


def test_nearest_rotations_matches_the_polar_decomposition():
    rng = np.random.default_rng(1)
    exact = Rotation.random(20, random_state=2).as_matrix()
    np.testing.assert_allclose(nearest_rotations(exact), exact, atol=1e-12)
    noisy = exact + 0.05 * rng.standard_normal(exact.shape)
    ours = nearest_rotations(noisy)
    for m, r in zip(noisy, ours):
        u, _ = scipy.linalg.polar(m)  # the nearest orthogonal matrix
        np.testing.assert_allclose(r, u, atol=1e-10)
        assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-12)


def _project(points: np.ndarray, cam: np.ndarray, transform: CropTransform) -> np.ndarray:
    half = transform.crop_size / 2
    return transform.crop_to_image(half * (1 + cam[0] * (points[:, :2] + cam[1:])))


def test_image_space_camera_describes_the_same_projection_in_any_crop():
    points = np.random.default_rng(3).uniform(-0.8, 0.8, (10, 3))
    # Equal x and y scales: a weak camera has one scale, so two crops whose
    # x/y ratios differ (by pixel rounding, ~1/width) cannot match exactly.
    first = CropTransform(0.41, 0.41, (37, -12), 224)
    second = CropTransform(0.55, 0.55, (80, 20), 224)
    cam = np.array([0.8, 0.05, -0.1])
    np.testing.assert_allclose(camera_from_image(camera_to_image(cam, first), first), cam, atol=1e-12)
    moved = camera_from_image(camera_to_image(cam, first), second)
    np.testing.assert_allclose(_project(points, moved, second), _project(points, cam, first), atol=1e-9)


def _geodesic(pose_a: np.ndarray, pose_b: np.ndarray) -> np.ndarray:
    a = Rotation.from_rotvec(pose_a.reshape(-1, 3))
    b = Rotation.from_rotvec(pose_b.reshape(-1, 3))
    return (a.inv() * b).magnitude()


def test_body_smoother_steadies_a_still_person_seen_through_moving_crops():
    rng = np.random.default_rng(4)
    joints = 24
    true_pose = Rotation.random(joints, random_state=5).as_rotvec() * 0.5
    true_betas = rng.standard_normal(10)
    true_image_cam = camera_to_image(np.array([0.8, 0.02, 0.05]), CropTransform(0.5, 0.5, (40, 30), 224))
    smoother = BodySmoother(FPS)
    raw_error, smooth_error, raw_pos, smooth_pos = [], [], [], []
    for frame in range(90):
        crop = CropTransform(0.5, 0.5, (40 + rng.integers(-6, 7), 30 + rng.integers(-6, 7)), 224)
        noise = Rotation.from_rotvec(0.08 * rng.standard_normal((joints, 3)))
        pose = (noise * Rotation.from_rotvec(true_pose)).as_rotvec().reshape(-1)
        image_cam = true_image_cam + np.array([0.02, 0.005, 0.005]) * rng.standard_normal(3)
        cam = camera_from_image(image_cam, crop)
        betas = true_betas + 0.2 * rng.standard_normal(10)
        s_cam, s_pose, s_betas = smoother(frame, cam, pose, betas, crop)
        assert s_pose.shape == pose.shape and s_betas.shape == betas.shape
        if frame >= 30:  # after the filter has settled
            raw_error.append(_geodesic(pose, true_pose).mean())
            smooth_error.append(_geodesic(s_pose, true_pose).mean())
            raw_pos.append(np.abs(image_cam - true_image_cam).mean())
            smooth_pos.append(np.abs(camera_to_image(s_cam, crop) - true_image_cam).mean())
    # The defaults smooth mildly: frame-to-frame noise reads as speed and
    # raises the cutoff (measured: 0.63 of the raw error).
    assert np.mean(smooth_error) < 0.75 * np.mean(raw_error), (np.mean(smooth_error), np.mean(raw_error))
    assert np.mean(smooth_pos) < 0.6 * np.mean(raw_pos)
    assert np.abs(s_betas - true_betas).mean() < 0.5 * 0.2 * np.sqrt(2 / np.pi)


def test_body_smoother_restarts_after_a_gap():
    smoother = BodySmoother(FPS)
    pose = np.zeros(72)
    crop = CropTransform(1.0, 1.0, (0, 0), 224)
    smoother(0, np.array([0.8, 0, 0]), pose, np.zeros(10), crop)
    smoother(1, np.array([0.8, 0, 0]), pose, np.zeros(10), crop)
    jump = pose.copy()
    jump[3:6] = [1.0, 0.0, 0.0]
    _, after_gap, _ = smoother(5, np.array([0.7, 0.1, 0]), jump, np.ones(10), crop)
    np.testing.assert_allclose(after_gap, jump, atol=1e-9)  # not pulled towards frame 1
    _, next_frame, _ = smoother(6, np.array([0.7, 0.1, 0]), pose, np.ones(10), crop)
    assert 0 < np.linalg.norm(next_frame[3:6]) < 1.0  # filtered from frame 5 on
    with pytest.raises(ValueError, match="fps"):
        BodySmoother(0.0)


def test_rotations_stay_rotations_near_pi():
    """Axis-angle flips sign at π; the matrices being filtered do not."""
    smoother = BodySmoother(FPS)
    crop = CropTransform(1.0, 1.0, (0, 0), 224)
    for frame, angle in enumerate(np.linspace(np.pi - 0.1, np.pi + 0.1, 9)):
        pose = np.zeros(72)
        pose[:3] = [angle, 0, 0]
        _, out, _ = smoother(frame, np.array([0.8, 0, 0]), pose, np.zeros(10), crop)
        m = axis_angle_to_matrix(torch.tensor(out[:3])[None], eps=0.0)[0].numpy()
        truth = Rotation.from_rotvec(pose[:3]).as_matrix()
        assert np.abs(m - truth).max() < 0.25  # follows through π, no jump to the other side
