"""openhmr.smoothing: a video's body estimates over time — the whole-clip
Whittaker smoother (GCV) and the causal One-Euro filter."""

from __future__ import annotations


import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.transform import Rotation

from openhmr.data.crop import CropTransform
from openhmr.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from openhmr.smoothing import (
    BodySmoother,
    OneEuroFilter,
    camera_from_image,
    camera_to_image,
    nearest_rotations,
    runs,
    smooth_clip,
    whittaker_gcv,
    whittaker_trace,
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
    """With speed_axes, all entries of a group get the same cutoff: an
    entry that barely moves, beside one that moves fast, is let through as
    fast (it follows its own small steps more closely than alone, where
    its own slow speed keeps its cutoff low)."""
    grouped, single = OneEuroFilter(1.0, 5.0, speed_axes=1), OneEuroFilter(1.0, 5.0)
    for k in range(30):
        x = np.array([[k / FPS * 3.0, 1.0 + 0.01 * (k % 2)]])
        g, s = grouped(x, 1 / FPS), single(x, 1 / FPS)
    assert abs(g[0, 1] - x[0, 1]) < 0.7 * abs(s[0, 1] - x[0, 1])
    assert abs(g[0, 0] - x[0, 0]) < abs(s[0, 0] - x[0, 0]) + 1e-12  # the fast entry: same or less lag


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
        image_cam = true_image_cam + np.array([0.02, 0.9, 0.9]) * rng.standard_normal(3)  # log scale, px
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


# ------------------------------------------------------------------ whole clip
def test_whittaker_is_the_exact_smoother_and_gcv_charges_its_trace():
    """For a fixed λ the result equals the dense solve of (I + λDᵀD)z = y, D
    the second difference (to 1e-9), and whittaker_trace is tr (I + λDᵀD)⁻¹."""
    rng = np.random.default_rng(0)
    for n in (4, 7, 60):
        y = rng.standard_normal((n, 3))
        second = np.diff(np.eye(n), 2, axis=0)
        for lam in (0.0, 0.3, 50.0, 1e5):
            system = np.eye(n) + lam * second.T @ second
            got, chosen = whittaker_gcv(y, np.array([lam]))
            assert chosen == lam
            np.testing.assert_allclose(got, np.linalg.solve(system, y), atol=1e-9)
            assert abs(whittaker_trace(n, lam) - np.trace(np.linalg.inv(system))) < 1e-8
    short = rng.standard_normal((3, 2))
    np.testing.assert_array_equal(whittaker_gcv(short)[0], short)  # too short to smooth


def test_smooth_clip_keeps_a_steady_turn_to_the_ends():
    """A root turning at 6° a frame while 23 still joints tremble by ~1°: the
    cosine-transform smoother, whose penalty took a mirror at the clip's ends,
    slowed the turn there with the λ the still joints set (7.7° off at the
    first and last frames, against 0.9° unsmoothed); the exact one does not."""
    rng = np.random.default_rng(0)
    n, joints = 60, 24
    turn = np.radians(6.0) * np.arange(n)
    crop = CropTransform(0.5, 0.5, (0, 0), 224)

    def yaw(poses: np.ndarray) -> np.ndarray:
        r = axis_angle_to_matrix(torch.as_tensor(poses[:, :3])).numpy()
        return np.unwrap(np.arctan2(r[:, 0, 2], r[:, 0, 0]))

    ends, middle = [], []
    for _ in range(10):
        truth = np.zeros((n, joints, 3))
        truth[:, 0, 1] = turn
        truth[:, 1:] = [0.2, 0.1, -0.1]
        tremble = axis_angle_to_matrix(torch.as_tensor(rng.normal(0, 0.017, (n * joints, 3))))
        noisy = matrix_to_axis_angle(axis_angle_to_matrix(torch.as_tensor(truth.reshape(-1, 3))) @ tremble)
        _, smoothed, _ = smooth_clip(range(n), np.tile([0.9, 0.0, 0.0], (n, 1)), noisy.numpy().reshape(n, -1),
                                     np.zeros((n, 10)), [crop] * n)
        error = np.degrees(yaw(smoothed) - turn)
        ends.append(error[[0, -1]])
        middle.append(error[n // 4: 3 * n // 4])
    assert np.abs(np.mean(ends, axis=0)).max() < 3.0, np.mean(ends, axis=0)
    assert np.sqrt(np.mean(np.square(middle))) < 0.6


def test_whittaker_keeps_a_steady_motion_to_the_ends():
    """A straight line comes back as it is at any λ; a person moving at a
    steady 8 px a frame, under 2 px of noise, is not pulled in at the clip's
    ends (the mirror-extended smoother alone came out 1.3 px short at both
    ends on average, and 9 px in a demo run); GCV charges each λ the trace
    of the smoother actually applied (its hat matrix built column by column)."""
    n = 25
    t = np.arange(n, dtype=np.float64)
    for lam in (0.5, 1e6):
        line = np.stack([3.0 - 0.7 * t, 387.0 + 8.0 * t], axis=1)
        np.testing.assert_allclose(whittaker_gcv(line, np.array([lam]))[0], line, atol=1e-9)
    rng = np.random.default_rng(3)
    truth = 387.0 + 8.0 * t
    ends = np.array([whittaker_gcv(truth + 2.0 * rng.standard_normal(n))[0][[0, -1]] - truth[[0, -1]]
                     for _ in range(200)])
    assert np.abs(ends.mean(axis=0)).max() < 0.3, ends.mean(axis=0)
    for n, lam in ((4, 0.3), (25, 1.0), (25, 1e4), (60, 30.0)):
        hat = np.stack([whittaker_gcv(e, np.array([lam]))[0] for e in np.eye(n)], axis=1)
        assert abs(whittaker_trace(n, lam) - np.trace(hat)) < 1e-9, (n, lam)


def test_gcv_sets_the_strength_from_the_data():
    """Noise on a still value is smoothed almost flat; noise on a moving signal
    is removed without flattening the motion; a clean signal is left nearly
    as it is."""
    rng = np.random.default_rng(1)
    t = np.arange(120) / FPS
    noise = 0.1 * rng.standard_normal(120)
    flat, lam_flat = whittaker_gcv(1.0 + noise)
    assert np.abs(flat - 1.0).mean() < 0.15 * np.abs(noise).mean()
    wave = np.sin(2 * np.pi * 1.5 * t)  # 1.5 Hz, quick for a body
    smoothed, lam_wave = whittaker_gcv(wave + noise)
    assert np.abs(smoothed - wave).mean() < 0.5 * np.abs(noise).mean()
    assert lam_wave < lam_flat
    clean, _ = whittaker_gcv(wave)
    assert np.abs(clean - wave).max() < 0.02


def test_runs_split_at_gaps():
    assert runs([]) == []
    assert runs([0, 1, 2, 5, 6, 9]) == [slice(0, 3), slice(3, 5), slice(5, 6)]


def _still_person(rng: np.random.Generator, frames: int, joints: int = 24):
    """A still body seen through crops that jitter, with noisy estimates."""
    true_pose = Rotation.random(joints, random_state=5).as_rotvec() * 0.5
    true_betas = rng.standard_normal(10)
    true_image_cam = camera_to_image(np.array([0.8, 0.02, 0.05]), CropTransform(0.5, 0.5, (40, 30), 224))
    crops, cams, poses, betas = [], [], [], []
    for _ in range(frames):
        crop = CropTransform(0.5, 0.5, (40 + rng.integers(-6, 7), 30 + rng.integers(-6, 7)), 224)
        noise = Rotation.from_rotvec(0.08 * rng.standard_normal((joints, 3)))
        poses.append((noise * Rotation.from_rotvec(true_pose)).as_rotvec().reshape(-1))
        image_cam = true_image_cam + np.array([0.02, 0.9, 0.9]) * rng.standard_normal(3)  # log scale, px
        cams.append(camera_from_image(image_cam, crop))
        betas.append(true_betas + 0.2 * rng.standard_normal(10))
        crops.append(crop)
    return (true_pose, true_betas, true_image_cam), crops, np.array(cams), np.array(poses), np.array(betas)


def test_smooth_clip_steadies_a_still_person_more_than_the_causal_filter():
    rng = np.random.default_rng(4)
    (true_pose, true_betas, true_cam), crops, cams, poses, betas = _still_person(rng, 60)
    frames = list(range(60))
    s_cams, s_poses, s_betas = smooth_clip(frames, cams, poses, betas, crops)
    assert s_cams.shape == cams.shape and s_poses.shape == poses.shape and s_betas.shape == betas.shape
    causal = BodySmoother(FPS)
    c_poses = np.array([causal(f, c, p, b, t)[1] for f, c, p, b, t in zip(frames, cams, poses, betas, crops)])
    raw = np.mean([_geodesic(p, true_pose).mean() for p in poses])
    clip = np.mean([_geodesic(p, true_pose).mean() for p in s_poses])
    one_euro = np.mean([_geodesic(p, true_pose).mean() for p in c_poses[10:]])
    assert clip < 0.3 * raw and clip < 0.6 * one_euro, (clip, one_euro, raw)
    image = np.array([camera_to_image(c, t) for c, t in zip(s_cams, crops)])
    raw_image = np.array([camera_to_image(c, t) for c, t in zip(cams, crops)])
    # (0.30 here: the exact smoother leaves a still clip's ends a little noisier than the
    # mirror-extended one did, 0.29, which in turn slowed a steady turn there)
    assert np.abs(image - true_cam).mean() < 0.35 * np.abs(raw_image - true_cam).mean()
    assert np.abs(s_betas - true_betas).mean() < 0.3 * np.abs(betas - true_betas).mean()


def test_smooth_clip_follows_motion_without_lag():
    """One joint turning at a steady 1.2 rad/s under noise (staying below π,
    where axis-angle wraps): the causal filter trails behind it, the
    whole-clip smoother does not."""
    rng = np.random.default_rng(6)
    n = 60
    angle = 0.2 + 1.2 * np.arange(n) / FPS
    poses = np.zeros((n, 72))
    poses[:, 3] = angle + 0.02 * rng.standard_normal(n)
    crop = CropTransform(1.0, 1.0, (0, 0), 224)
    cams, betas = np.tile([0.8, 0.0, 0.0], (n, 1)), np.zeros((n, 10))
    _, s_poses, _ = smooth_clip(range(n), cams, poses, betas, [crop] * n)
    causal = BodySmoother(FPS)
    c_poses = np.array([causal(f, cams[f], poses[f], betas[f], crop)[1] for f in range(n)])
    middle = slice(10, n - 10)
    clip_lag = float((angle - s_poses[:, 3])[middle].mean())
    causal_lag = float((angle - c_poses[:, 3])[middle].mean())
    assert abs(clip_lag) < 0.3 * causal_lag, (clip_lag, causal_lag)
    clip_error = np.abs(s_poses[:, 3] - angle)[middle].mean()
    assert clip_error < 0.6 * np.abs(poses[:, 3] - angle)[middle].mean()
    assert clip_error < 0.7 * np.abs(c_poses[:, 3] - angle)[middle].mean()


def test_smooth_clip_smooths_runs_apart_and_checks_its_input():
    rng = np.random.default_rng(7)
    _, crops, cams, poses, betas = _still_person(rng, 20)
    frames = list(range(10)) + list(range(15, 25))  # a gap after frame 9
    first = smooth_clip(frames, cams, poses, betas, crops)
    changed = poses.copy()
    changed[10:] += 0.3  # only the second run differs
    second = smooth_clip(frames, cams, changed, betas, crops)
    np.testing.assert_allclose(first[1][:10], second[1][:10], atol=1e-12)  # the first run does not see it
    assert np.abs(first[1][10:] - second[1][10:]).max() > 0.01
    for a, b in ((first[0], second[0]), (first[2], second[2])):  # cameras and shapes: only their own runs
        np.testing.assert_allclose(a, b, atol=1e-12)
    with pytest.raises(ValueError, match="increase"):
        smooth_clip([0, 2, 1] + list(range(3, 20)), cams, poses, betas, crops)
    with pytest.raises(ValueError, match="frames"):
        smooth_clip(frames[:-1], cams, poses, betas, crops)


def test_the_shape_is_averaged_over_each_run_not_filtered():
    """A person keeps their shape: a shape estimate drifting as a random walk
    (a tracked fit's) comes out as its run's mean over the clip, and as the
    mean of the run's frames so far causally; a gap starts a new run."""
    rng = np.random.default_rng(8)
    _, crops, cams, poses, _ = _still_person(rng, 30)
    betas = np.cumsum(0.05 * rng.standard_normal((30, 10)), axis=0)  # drifting
    frames = list(range(12)) + list(range(20, 38))  # two runs: 12 and 18 frames
    _, _, s_betas = smooth_clip(frames, cams, poses, betas, crops)
    np.testing.assert_allclose(s_betas[:12], np.tile(betas[:12].mean(0), (12, 1)), atol=1e-12)
    np.testing.assert_allclose(s_betas[12:], np.tile(betas[12:].mean(0), (18, 1)), atol=1e-12)
    causal = BodySmoother(FPS)
    c_betas = np.array([causal(f, c, p, b, t)[2] for f, c, p, b, t in zip(frames, cams, poses, betas, crops)])
    for run in (slice(0, 12), slice(12, 30)):
        so_far = np.cumsum(betas[run], axis=0) / np.arange(1, run.stop - run.start + 1)[:, None]
        np.testing.assert_allclose(c_betas[run], so_far, atol=1e-12)


def test_cameras_are_refitted_to_keep_each_frames_projection_when_the_shape_is_averaged():
    """With the body's joints given, a frame whose shape is replaced by the
    average keeps the projection its smoothed camera gives the body with the
    shape smoothed as the rest is (GCV over the clip, One-Euro causally):
    here the shape scales the body, so a scale and an offset of the camera
    undo it exactly."""
    from openhmr.smoothing import OneEuroFilter, SmoothingConfig, whittaker_gcv

    rng = np.random.default_rng(9)
    base = 0.3 * rng.standard_normal((15, 3))

    def joints_of(poses, shapes):
        return base[None] * (1.0 + shapes[:, :1, None]) + 0.01 * poses[:, None, :3]

    def project(cams, joints):
        return cams[:, None, :1] * (joints[..., :2] + cams[:, None, 1:])

    _, crops, cams, poses, _ = _still_person(rng, 30)
    betas = np.cumsum(0.05 * rng.standard_normal((30, 10)), axis=0)
    frames = range(30)
    cams_r, poses_r, shapes_r = smooth_clip(frames, cams, poses, betas, crops, joints_of=joints_of)
    cams_f, poses_f, shapes_f = smooth_clip(frames, cams, poses, betas, crops)
    np.testing.assert_allclose(poses_r, poses_f)
    np.testing.assert_allclose(shapes_r, shapes_f)
    assert np.abs(cams_r[:, 0] - cams_f[:, 0]).max() > 1e-3  # the averaged body's size differs
    np.testing.assert_allclose(project(cams_r, joints_of(poses_r, shapes_r)),
                               project(cams_f, joints_of(poses_f, whittaker_gcv(betas)[0])), atol=1e-9)
    refitted, plain = BodySmoother(FPS, joints_of=joints_of), BodySmoother(FPS)
    one_euro = OneEuroFilter(*SmoothingConfig().shape, speed_axes=1)
    for f in frames:
        c_r, p_r, b_r = refitted(f, cams[f], poses[f], betas[f], crops[f])
        c_f, p_f, _ = plain(f, cams[f], poses[f], betas[f], crops[f])
        filtered = one_euro(betas[f], 1.0 / FPS)
        np.testing.assert_allclose(project(c_r[None], joints_of(p_r[None], b_r[None])),
                                   project(c_f[None], joints_of(p_f[None], filtered[None])), atol=1e-9)


def test_one_euro_smoothing_factor_is_that_of_the_cutoff_frequency():
    """Casiez et al.: α = 1 / (1 + τ/T), τ = 1/(2π f_c), T the sampling
    period. A step from 0 to 1 at 30 fps with f_c = 1 Hz and beta 0: the
    second output is α = 0.173171 (not 0.0948 of τ = 1/(π f_c)), the third
    1 − (1 − α)². With beta 0.5 the cutoff rises to 1 + 0.5·|ẋ|, ẋ the speed
    low-passed at d_cutoff = 1 Hz: (1/T)·α. Exact formulas, to 1e-12."""
    dt = 1.0 / FPS

    def alpha(cutoff):
        return 1.0 / (1.0 + 1.0 / (2.0 * np.pi * cutoff) / dt)

    a = alpha(1.0)
    assert a == pytest.approx(0.1731707, abs=1e-7)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    assert f(np.array([0.0]), dt)[0] == 0.0
    assert f(np.array([1.0]), dt)[0] == pytest.approx(a, abs=1e-12)
    assert f(np.array([1.0]), dt)[0] == pytest.approx(1.0 - (1.0 - a) ** 2, abs=1e-12)
    fast = OneEuroFilter(min_cutoff=1.0, beta=0.5, d_cutoff=1.0)
    fast(np.array([0.0]), dt)
    speed = a * (1.0 / dt)
    assert fast(np.array([1.0]), dt)[0] == pytest.approx(alpha(1.0 + 0.5 * speed), abs=1e-12)


def test_nearest_rotations_of_reflections_are_rotations():
    """A matrix with a negative determinant (a reflection, e.g. diag(1, 1, −1)
    plus noise, or a random matrix) has an orthogonal polar factor of det −1,
    which is no rotation. The nearest rotation (max tr(Rᵀ M)) flips the sign
    of the smallest singular direction: det +1, orthonormal (1e-12), and equal
    (1e-10) to scipy's solution of the same problem, Wahba's problem with the
    columns of M as targets of the unit axes (Rotation.align_vectors)."""
    rng = np.random.default_rng(10)
    reflection = np.diag([1.0, 1.0, -1.0])
    near = reflection + 0.05 * rng.standard_normal((10, 3, 3))
    random = rng.standard_normal((40, 3, 3))
    random = random[np.linalg.det(random) < 0]
    matrices = np.concatenate([near, random])
    assert len(matrices) > 20 and (np.linalg.det(matrices) < 0).all()
    ours = nearest_rotations(matrices)
    np.testing.assert_allclose(np.linalg.det(ours), 1.0, atol=1e-12)
    np.testing.assert_allclose(ours @ np.swapaxes(ours, -1, -2), np.broadcast_to(np.eye(3), ours.shape),
                               atol=1e-12)
    for m, r in zip(matrices, ours):
        expected = Rotation.align_vectors(m.T, np.eye(3))[0].as_matrix()
        np.testing.assert_allclose(r, expected, atol=1e-10)


def test_body_smoother_restarts_after_a_single_missing_frame():
    """Frames 0, 1, then 3: frame 2 has no body, so frame 3 starts a new run
    and nothing of frames 0–1 carries over: its pose, camera and shape come
    back as given (the filters' first value passes unchanged; to 1e-9 after
    the axis-angle and image-camera round trips). Frame 4 then follows frame 3
    and is filtered (its shape is the mean of frames 3 and 4)."""
    smoother = BodySmoother(FPS)
    crop = CropTransform(1.0, 1.0, (0, 0), 224)
    still = np.zeros(72)
    for frame in (0, 1):
        smoother(frame, np.array([0.8, 0.0, 0.0]), still, np.zeros(10), crop)
    pose = still.copy()
    pose[3:6] = [1.0, 0.0, 0.0]
    cam, betas = np.array([0.7, 0.1, -0.05]), np.ones(10)
    out_cam, out_pose, out_betas = smoother(3, cam, pose, betas, crop)
    np.testing.assert_allclose(out_pose, pose, atol=1e-9)
    np.testing.assert_allclose(out_cam, cam, atol=1e-9)
    np.testing.assert_allclose(out_betas, betas, atol=1e-12)
    _, next_pose, next_betas = smoother(4, cam, still, np.zeros(10), crop)
    np.testing.assert_allclose(next_betas, 0.5 * betas, atol=1e-12)
    assert 0 < np.linalg.norm(next_pose[3:6]) < 1.0


def _weak_camera(per_metre: float, origin: np.ndarray, crop: CropTransform) -> np.ndarray:
    """The weak camera (s, tx, ty) in ``crop`` that draws a metre ``per_metre``
    image pixels long and the body's origin at image pixel ``origin``."""
    half = crop.crop_size / 2
    s = per_metre * crop.scale_x / half
    return np.concatenate([[s], (crop.image_to_crop(origin) / half - 1) / s])


def _image_origin(cam: np.ndarray, crop: CropTransform) -> np.ndarray:
    """Where the weak camera ``cam`` in ``crop`` draws the body's origin, image pixels."""
    half = crop.crop_size / 2
    return crop.crop_to_image(half * (1 + cam[0] * cam[1:]))


def test_the_size_tremble_does_not_move_the_smoothed_position():
    """Size and position are smoothed apart: a still body whose image
    position is exact, at (1500, 800) px in a large picture, keeps it,
    whatever the 2 % tremble of its size (smoothed in metres, pixels over
    each frame's own scale, it moved by 4.2 px on average causally, 0.15 px
    with the clip smoother, whose λ then happened to suit both; on a brisk
    walk, 6 px)."""
    rng = np.random.default_rng(0)
    crop, origin = CropTransform(0.5, 0.5, (1450, 750), 224), np.array([1500.0, 800.0])
    sizes = 180.0 * np.exp(0.02 * rng.standard_normal(60))
    cams = np.array([_weak_camera(size, origin, crop) for size in sizes])
    frames, poses, betas = list(range(60)), np.zeros((60, 72)), np.zeros((60, 10))
    s_cams, _, _ = smooth_clip(frames, cams, poses, betas, [crop] * 60)
    causal = BodySmoother(FPS)
    c_cams = np.array([causal(f, c, p, b, crop)[0] for f, c, p, b in zip(frames, cams, poses, betas)])
    for smoothed in (s_cams, c_cams):
        np.testing.assert_allclose([_image_origin(c, crop) for c in smoothed], np.tile(origin, (60, 1)), atol=1e-6)
        assert np.std(np.log(smoothed[:, 0])) < 0.7 * np.std(np.log(cams[:, 0]))  # the size is smoothed


def test_a_camera_without_an_image_scale_is_refused():
    """s ≤ 0 has no image scale (a clear ValueError, not a math domain error)."""
    with pytest.raises(ValueError, match="a camera of scale -0.1 has no image scale"):
        camera_to_image(np.array([-0.1, 0.0, 0.0]), CropTransform(1.0, 1.0, (0, 0), 224))


def test_smooth_clip_of_no_frames_is_empty():
    cams, poses, betas = smooth_clip([], np.zeros((0, 3)), np.zeros((0, 72)), np.zeros((0, 10)), [])
    assert cams.shape == (0, 3) and poses.shape == (0, 72) and betas.shape == (0, 10)
