"""Keypoint fitting (SMPLify adapted): synthetic truth, cameras, photos, errors."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from openhmr.errors import InputError
from openhmr.fit import (
    JUMP_BONES,
    UPRIGHT_SIGMA,
    FitConfig,
    FitInit,
    bend_axes,
    bend_guard,
    choose_model_set,
    fit,
    gmof,
    joint_stiffness,
    kinematic_jumps,
    torso_mirror,
    upright_prior,
)
from openhmr.geometry.procrustes import procrustes_align
from openhmr.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CROP = 224


@pytest.fixture(scope="module")
def anny_model():
    pytest.importorskip("anny")
    from openhmr.body.anny import Anny

    return Anny()


def _synthetic(model, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Random bodies in a 224 crop (weak camera): truth, noisy 2D (σ = 2 px,
    20 % dropped) and noisy hip-centred 3D (σ = 2 cm) BODY_25 keypoints."""
    g = torch.Generator().manual_seed(seed)
    pose, shape = model.random_pose(n, g), model.random_shape(n, g)
    with torch.no_grad():
        out = model(pose, shape)
    kp3 = out.keypoints["body25"]
    cam = torch.cat([0.75 + 0.1 * torch.rand(n, 1, generator=g),
                     0.1 * (2 * torch.rand(n, 2, generator=g) - 1)], 1)
    clean = (cam[:, None, :1] * (kp3[..., :2] + cam[:, None, 1:]) + 1) * CROP / 2
    noisy = clean + 2.0 * torch.randn(clean.shape, generator=g)
    conf = (torch.rand(clean.shape[:2], generator=g) >= 0.2).float()
    centred = kp3 - 0.5 * (kp3[:, 9:10] + kp3[:, 12:13])
    kp3_obs = centred + 0.02 * torch.randn(centred.shape, generator=g)
    return {
        "pose": pose, "shape": shape, "cam": cam, "kp3": kp3, "clean": clean,
        "vertices": out.vertices, "kp2d": torch.cat([noisy, conf[..., None]], -1),
        "kp3_obs": torch.cat([kp3_obs, torch.ones_like(kp3_obs[..., :1])], -1),
    }


def _median(values: torch.Tensor) -> float:
    """The median of all of ``values``; on an even count, the mean of the two
    middle values (``Tensor.median`` would return the lower one)."""
    return float(values.double().flatten().quantile(0.5))


def _pa_mpjpe_mm(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    aligned = procrustes_align(pred.double(), truth.double())
    return (aligned - truth.double()).norm(dim=-1).mean(-1) * 1000.0


def test_synthetic_truth_is_recovered(anny_model) -> None:
    """Acceptance 1 (reduced to 4 bodies; benchmarks/fit_synthetic.py runs 20+).

    2D + 3D keypoints (the detector's situation): median 2D error ≤ 3 px and
    PA-MPJPE ≤ 30 mm. 2D only: the same 2D accuracy, and a looser 3D bound —
    a limb's depth is ambiguous from one view, so 2D-only fits can pick the
    mirror-in-depth solution for some joints; several starts find lower
    minima of the energy than one start does.
    """
    truth = _synthetic(anny_model, 4, seed=11)
    # The renderer and the camera agree: every visible keypoint projects into
    # (or next to) the rendered silhouette.
    import openhmr.render as render
    from openhmr.geometry.camera import weak_to_perspective_translation

    trans = weak_to_perspective_translation(truth["cam"], focal=1e4, crop_size=CROP)
    verts = truth["vertices"] + trans[:, None]
    result = render.render_mesh(verts, anny_model.faces, 1e4, (CROP / 2, CROP / 2), CROP, CROP)
    mask = result.mask > 0.5
    for i in range(4):
        x = truth["clean"][i, :, 0].round().long().clamp(0, CROP - 1)
        y = truth["clean"][i, :, 1].round().long().clamp(0, CROP - 1)
        near = torch.nn.functional.max_pool2d(mask[i][None, None].float(), 7, 1, 3)[0, 0]
        assert near[y, x].float().mean() > 0.9

    with_3d = fit(anny_model, truth["kp2d"], "body25", keypoints3d=truth["kp3_obs"],
                  keypoints3d_set="body25", camera="weak", crop_size=CROP)
    only_2d = fit(anny_model, truth["kp2d"], "body25", camera="weak", crop_size=CROP)
    for result in (with_3d, only_2d):
        err2d = (result.keypoints2d - truth["clean"]).norm(dim=-1)
        assert _median(err2d) <= 3.0
        assert result.output.vertices.shape == (4, 13718, 3)
        assert torch.isfinite(result.residuals_px).all()
    pa = _pa_mpjpe_mm(with_3d.output.keypoints["body25"], truth["kp3"])
    assert _median(pa) <= 30.0, pa
    pa2 = _pa_mpjpe_mm(only_2d.output.keypoints["body25"], truth["kp3"])
    assert _median(pa2) <= 70.0, pa2
    one_start = fit(anny_model, truth["kp2d"], "body25", camera="weak", crop_size=CROP,
                    config=FitConfig(hypotheses=1))
    energy = lambda r: sum(r.losses.values())  # noqa: E731
    # The one start is the first of the 8: no body ends higher (up to the
    # optimiser's round-off), and here one of the 4 ends 25 % lower.
    assert (energy(only_2d) <= 1.01 * energy(one_start)).all()
    assert (energy(only_2d) < 0.8 * energy(one_start)).any()
    # (Whether those lower minima also lie nearer the truth, 4 bodies cannot
    # tell: the accuracy table measures it on 100.)
    # The camera is recovered too (scale within 10 %).
    assert ((with_3d.cam[:, 0] / truth["cam"][:, 0]) - 1).abs().max() < 0.1


def _synthetic_photos(model, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Random bodies photographed by a pinhole camera (a 1024-px image, focal
    1.0–1.4 × its width, 2.5–5 m away: people ~520 px tall), their
    ``blazepose27`` keypoints projected exactly, σ = 2 px noise, 20 % dropped."""
    g = torch.Generator().manual_seed(seed)
    pose, shape = model.random_pose(n, g), model.random_shape(n, g)
    with torch.no_grad():
        out = model(pose, shape)
    kp3 = out.keypoints["blazepose27"]
    focal = 1024.0 * (1.0 + 0.4 * torch.rand(n, generator=g))
    trans = torch.cat([0.3 * (2 * torch.rand(n, 2, generator=g) - 1),
                       2.5 + 2.5 * torch.rand(n, 1, generator=g)], 1)
    pp = torch.full((n, 2), 512.0)
    placed = kp3 + trans[:, None]
    clean = focal[:, None, None] * placed[..., :2] / placed[..., 2:] + pp[:, None]
    noisy = clean + 2.0 * torch.randn(clean.shape, generator=g)
    conf = (torch.rand(clean.shape[:2], generator=g) >= 0.2).float()
    return {"pose": pose, "kp3": kp3, "clean": clean, "focal": focal, "pp": pp, "trans": trans,
            "vertices": out.vertices, "kp2d": torch.cat([noisy, conf[..., None]], -1),
            "kp3_sets": out.keypoints}


def test_straight_arms_are_fitted_straight(anny_model) -> None:
    """Anny's rest elbow is flexed ~42°; a fit to a straight-armed body's
    exact 2D and 3D keypoints straightens the arm rather than stopping at
    rest (until 2026-12-07 the prior took a straight arm for one bent the
    wrong way, and the fit stayed at ~40°, the wrist 34 mm off)."""
    from openhmr.body.anny import JOINT_NAMES

    pose = torch.zeros(2, 22, 3)
    pose[:, 0] = torch.tensor([math.pi, 0.0, 0.0])
    pose[1, JOINT_NAMES.index("left_shoulder"), 2] = 0.85  # arms out to the side
    pose[1, JOINT_NAMES.index("right_shoulder"), 2] = -0.85
    for side in ("left", "right"):
        j = JOINT_NAMES.index(f"{side}_elbow")
        pose[:, j] = -anny_model.rest_flexion[j] * anny_model.bend_axes[j]
    pose = pose.reshape(2, 66)
    with torch.no_grad():
        truth = anny_model(pose, torch.zeros(2, 6))
    kp3 = truth.keypoints["body25"]
    kp2 = (0.75 * kp3[..., :2] + 1) * CROP / 2
    centred = kp3 - 0.5 * (kp3[:, 9:10] + kp3[:, 12:13])
    ones = torch.ones_like(kp3[..., :1])
    result = fit(anny_model, torch.cat([kp2, ones], -1), "body25",
                 keypoints3d=torch.cat([centred, ones], -1), camera="weak", crop_size=CROP)
    joints = result.output.joints
    for side in ("left", "right"):
        shoulder, elbow, wrist = (joints[:, JOINT_NAMES.index(f"{side}_{n}")]
                                  for n in ("shoulder", "elbow", "wrist"))
        upper, fore = elbow - shoulder, wrist - elbow
        angle = torch.rad2deg(torch.acos((upper * fore).sum(-1) / (upper.norm(dim=-1) * fore.norm(dim=-1))))
        assert float(angle.max()) < 20.0, (side, angle)
    fitted = result.output.keypoints["body25"]
    fitted = fitted - 0.5 * (fitted[:, 9:10] + fitted[:, 12:13])
    wrist_error_mm = (fitted[:, [4, 7]] - centred[:, [4, 7]]).norm(dim=-1) * 1000.0
    assert float(wrist_error_mm.max()) < 20.0, wrist_error_mm


def test_keypoints_of_known_noise_on_photos(anny_model) -> None:
    """Bodies photographed at ~520 px with 2 px noise, 20 % dropped, the
    keypoints the open default fits, 2D alone (acceptance 1's photo reading;
    ``benchmarks/fit_synthetic.py --camera perspective --set blazepose27
    --known-noise`` runs 100).

    Told the noise (``noise_px``), the fit weighs the keypoints for it — 2 px
    on this person is a quarter of what it assumes otherwise — so it lies
    closer to them, nearer the noise-free projections, and nearer the truth.
    """
    n = 12
    truth = _synthetic_photos(anny_model, n, seed=0)
    import openhmr.render as render
    for i in range(3):  # the renderer and the camera agree on where the body is
        r = render.render_mesh(truth["vertices"][i] + truth["trans"][i], anny_model.faces,
                               float(truth["focal"][i]), truth["pp"][i], 1024, 1024)
        mask = torch.nn.functional.max_pool2d(r.mask[0][None, None].float(), 9, 1, 4)[0, 0]
        xy = truth["clean"][i].round().long().clamp(0, 1023)
        assert mask[xy[:, 1], xy[:, 0]].mean() > 0.9

    camera = {"camera": "perspective", "focal": truth["focal"], "principal_point": truth["pp"]}
    told = fit(anny_model, truth["kp2d"], "blazepose27", config=FitConfig(noise_px=2.0),
               **camera)
    assumed = fit(anny_model, truth["kp2d"], "blazepose27", **camera)
    # Told, the fit scores poses with the flatter prior (exponent 3) and
    # shapes by their own density (exponent 4), at the pose prior's weight;
    # else the Gaussians of both (exponent 2).
    weight = FitConfig().range_prior_weights[-1]
    for result, exponent in ((told, 3.0), (assumed, 2.0)):
        torch.testing.assert_close(
            result.losses["pose_prior"],
            weight * anny_model.pose_prior(result.pose, exponent=exponent), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(told.losses["shape_prior"],
                               weight * anny_model.shape_prior(told.betas, exponent=4.0))
    torch.testing.assert_close(assumed.losses["shape_prior"],
                               weight * anny_model.shape_prior(assumed.betas, exponent=2.0))
    # shape_prior_exponent=None restores λ_β‖β‖².
    plain = fit(anny_model, truth["kp2d"][:4], "blazepose27", config=FitConfig(shape_prior_exponent=None),
                camera="perspective", focal=truth["focal"][:4], principal_point=truth["pp"][:4])
    torch.testing.assert_close(plain.losses["shape_prior"],
                               FitConfig().shape_weights[-1] * plain.betas.pow(2).sum(-1))
    seen = truth["kp2d"][..., 2] > 0
    assert _median(told.residuals_px[seen]) < 0.7 * _median(assumed.residuals_px[seen])
    err_told, err_assumed = (_median((r.keypoints2d - truth["clean"]).norm(dim=-1))
                             for r in (told, assumed))
    assert err_told <= 3.0 and err_told < err_assumed
    pa_told, pa_assumed = (_pa_mpjpe_mm(r.output.keypoints["blazepose27"], truth["kp3"])
                           for r in (told, assumed))
    # (by 11.9 mm here; 8.8 before the jumps were the told default, 3.8 before the
    # mirrored starts, 2.0 at one thread, where round-off picks other depth twins)
    assert float(pa_told.mean()) < float(pa_assumed.mean()) - 1.0, (pa_told.mean(), pa_assumed.mean())
    # Measured here 34.1 mm (mean 36.0) with the kinematic jumps, the told default since
    # the evening of 2026-12-07; 38.8 (42.2) without them, 40.1 (44.7) before 3 of the 8
    # starts took the torso's mirror, and 35.6 (37.1) before 2026-12-07, when random_pose
    # drew no elbow straighter than Anny's rest (42°): a near-straight limb's flexion
    # towards the camera barely moves its image. Twelve bodies measure it coarsely (sets
    # of 100 range over several millimetres), so the bound leaves 3.4 mm of round-off.
    assert _median(pa_told) <= 37.5, pa_told
    # On the body's joints, as PA-MPJPE is usually scored, the told fit lies
    # nearer (measured here: lsp14 27.4, h36m17 24.9 mm, against 34.1 on all
    # the points; docs/fit_accuracy.md has them on 400 and 1,200 bodies).
    for joints in ("lsp14", "h36m17"):
        pa = _pa_mpjpe_mm(told.output.keypoints[joints], truth["kp3_sets"][joints])
        assert _median(pa) < _median(pa_told) and _median(pa) <= 34.0, (joints, pa)
    # Told also that the bodies stand upright (as random_pose draws them, tilted
    # by at most 0.14 rad), the fit leans them less. It lies nearer the truth on
    # the benchmark's 400 (README), which twelve bodies are too few to show
    # surely: here 33.2 mm, mean 35.4, against 34.1 / 36.0 told only (without
    # the jumps 40.1 / 43.6 against 38.8 / 42.2).
    upright = fit(anny_model, truth["kp2d"], "blazepose27", **camera,
                  config=FitConfig(noise_px=2.0, upright_sigma=UPRIGHT_SIGMA))
    torch.testing.assert_close(upright.losses["upright"],
                               weight * upright_prior(upright.pose[:, :3], UPRIGHT_SIGMA))
    assert "upright" not in told.losses
    tilt = lambda r: torch.acos(-axis_angle_to_matrix(r.pose[:, :3])[:, 1, 1].clamp(-1, 1))  # noqa: E731
    assert float(tilt(upright).mean()) < 0.85 * float(tilt(told).mean()), (tilt(upright), tilt(told))
    pa_upright = _pa_mpjpe_mm(upright.output.keypoints["blazepose27"], truth["kp3"])
    assert _median(pa_upright) <= 37.5 and float(pa_upright.mean()) <= float(pa_told.mean()) + 2.0
    # A tracked frame's one step weighs its keypoints the same way.
    one = {"focal": truth["focal"][:1], "principal_point": truth["pp"][:1]}
    previous = FitInit(cam=assumed.cam[:1], pose=assumed.pose[:1], betas=assumed.betas[:1])
    tracked = [fit(anny_model, truth["kp2d"][:1], "blazepose27", camera="perspective",
                   previous=previous, config=FitConfig(noise_px=noise), **one)
               for noise in (None, 2.0)]
    residual = [_median(r.residuals_px[seen[:1]]) for r in tracked]
    # (0.84 here: the tracked step holds the shape near the previous frame's,
    # which the untold fit's shape prior keeps near the people's spread; 0.71
    # with λ_β‖β‖² there.)
    assert residual[1] < 0.9 * residual[0], residual
    # ... but keeps the Gaussian prior, which tracked synthetic videos better.
    torch.testing.assert_close(
        tracked[1].losses["pose_prior"],
        weight * anny_model.pose_prior(tracked[1].pose, exponent=2.0), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(tracked[1].losses["shape_prior"],
                               FitConfig().shape_weights[-1] * tracked[1].betas.pow(2).sum(-1))


def test_newton_steps_finish_the_told_fit(anny_model) -> None:
    """``newton_steps``: L-BFGS stops short of the told fit's minimum (its
    energy is stiff); Newton steps from there lower every person's energy,
    and more of them change it no further: the fit ends at the minimum."""
    truth = _synthetic_photos(anny_model, 4, seed=3)
    camera = {"camera": "perspective", "focal": truth["focal"], "principal_point": truth["pp"]}
    energy = {}
    # (One of the four needs 11–20 steps: it stopped at 10 while a rest orientation's SVD, taken
    # for the whole batch, made its Hessian NaN.)
    for steps in (0, 20, 30):
        result = fit(anny_model, truth["kp2d"], "blazepose27",
                     config=FitConfig(noise_px=2.0, newton_steps=steps), **camera)
        energy[steps] = sum(result.losses.values())
    assert (energy[20] <= energy[0]).all() and float((energy[0] - energy[20]).max()) > 0.2, energy
    assert float((energy[20] - energy[30]).abs().max()) < 0.05 * float(
        (energy[0] - energy[20]).abs().max()), energy


@pytest.mark.parametrize("which", ["anny", "smpl"])
def test_kinematic_jumps_keep_the_image_and_turn_the_limb(which, request) -> None:
    """Each jump turns one limb bone to its other depth: under the weak
    camera every joint projects where it did, the bone's depth changes sign,
    its length is kept, and only the joints below it move; under the pinhole
    the moved child stays on its viewing ray."""
    model = request.getfixturevalue(f"{which}_model")
    names = list(model.joint_names)
    bones = [(names.index(j), names.index(c)) for j, c in JUMP_BONES]
    g = torch.Generator().manual_seed(1)
    if which == "anny":
        pose, shape = model.random_pose(3, g), model.random_shape(3, g)
    else:
        pose, shape = 0.3 * torch.randn(3, 72, generator=g), torch.zeros(3, 10)
    with torch.no_grad():
        joints = model(pose, shape).joints
        weak = torch.tensor([[0.9, 0.1, -0.1]]).expand(3, 3)
        jumped = kinematic_jumps(pose, joints, weak, "weak", tuple(model.parents), bones)
        trans = torch.tensor([[0.2, -0.1, 3.0]]).expand(3, 3)
        jumped_p = kinematic_jumps(pose, joints, trans, "perspective", tuple(model.parents), bones)
    assert jumped.shape == (len(bones) * 3, pose.shape[1])
    below = {c: {c} for _, c in bones}
    for k, p in enumerate(model.parents):
        for c, moved in below.items():
            if p in moved:
                moved.add(k)
    for i, (j, c) in enumerate(bones):
        with torch.no_grad():
            after = model(jumped[3 * i:3 * i + 3], shape).joints
            after_p = model(jumped_p[3 * i:3 * i + 3], shape).joints
        torch.testing.assert_close(after[..., :2], joints[..., :2], atol=2e-5, rtol=0)
        d, d_new = joints[:, c] - joints[:, j], after[:, c] - after[:, j]
        torch.testing.assert_close(d_new[:, 2], -d[:, 2], atol=2e-5, rtol=0)
        still = [k for k in range(len(names)) if k not in below[c]]
        torch.testing.assert_close(after[:, still], joints[:, still], atol=2e-5, rtol=0)
        ray = lambda x: x[:, c] + trans  # noqa: E731
        torch.testing.assert_close(ray(after_p) / ray(after_p)[:, 2:],
                                   ray(joints) / ray(joints)[:, 2:], atol=1e-5, rtol=0)
        torch.testing.assert_close((after_p[:, c] - after_p[:, j]).norm(dim=-1), d.norm(dim=-1),
                                   atol=2e-5, rtol=0)


def test_torso_mirror_keeps_the_torso_image_and_turns_the_yaw() -> None:
    """``torso_mirror``: points of the body's x–y plane (shoulders, hips) posed
    by the mirrored root lie where the original puts them, reflected in depth,
    so they project alike under the weak camera; an upright body turned by ψ
    becomes one turned by −ψ, one leaning towards the camera one leaning
    away, and mirroring twice gives the root back."""
    from openhmr.body.poses import upright_roots

    g = torch.Generator().manual_seed(3)
    roots = torch.cat([upright_roots(16, g), math.pi * (2 * torch.rand(16, 3, generator=g, dtype=torch.float64) - 1)])
    mirrored = torso_mirror(roots)
    r, r_m = axis_angle_to_matrix(roots), axis_angle_to_matrix(mirrored)
    plane = torch.randn(32, 5, 3, generator=g, dtype=torch.float64) * torch.tensor([0.3, 0.5, 0.0], dtype=torch.float64)
    posed, posed_m = plane @ r.transpose(1, 2), plane @ r_m.transpose(1, 2)
    torch.testing.assert_close(posed_m[..., :2], posed[..., :2], atol=1e-6, rtol=0)
    torch.testing.assert_close(posed_m[..., 2], -posed[..., 2], atol=1e-6, rtol=0)
    torch.testing.assert_close(axis_angle_to_matrix(torso_mirror(mirrored)), r, atol=1e-6, rtol=0)
    # the body's front, (0, 0, 1) in its frame: its yaw and its lean towards the camera change sign
    front, front_m = r[:16, :, 2], r_m[:16, :, 2]
    yaw = lambda f: torch.atan2(f[:, 0], -f[:, 2])  # noqa: E731
    torch.testing.assert_close(yaw(front_m), -yaw(front), atol=1e-6, rtol=0)
    up, up_m = -r[:16, :, 1], -r_m[:16, :, 1]  # the body's up, camera y pointing down
    torch.testing.assert_close(up_m[:, 2], -up[:, 2], atol=1e-6, rtol=0)
    assert float(yaw(front).abs().max()) > 0.5  # the roots were turned


def test_mirrored_starts_find_a_torso_turned_the_other_way(anny_model, monkeypatch) -> None:
    """``mirror_starts``: a torso turned by +ψ and one turned by −ψ project
    alike, and stage 1 may end at either (which one is round-off's choice
    for a body near the middle). Here stage 1 is made to end at the wrong one
    for the two bodies of 100 synthetic photos turned furthest (|ψ| ≈ 44°).
    From 2D alone and without the jumps, one of them turns back on its own;
    the other reaches the truth only from the starts at stage 1's mirror."""
    import openhmr.fit.solve as solve

    truth = _synthetic_photos(anny_model, 100, seed=1)
    root = axis_angle_to_matrix(truth["pose"][:, :3]) @ axis_angle_to_matrix(
        torch.tensor([[math.pi, 0.0, 0.0]])).transpose(-1, -2)  # R_y(ψ)·R_tilt, upright_roots' draw
    yaw = torch.atan2(root[:, 0, 2], root[:, 2, 2])
    pick = yaw.abs().argsort(descending=True)[:2]
    assert float(yaw[pick].abs().min()) > math.radians(44)
    real_stage1 = solve._stage1

    def wrong_turn(energy, candidates, betas0, iters):  # stage 1, ending at the truth's twin
        cam, pose = real_stage1(energy, candidates, betas0, iters)
        pose = pose.clone()
        pose[:, :3] = torso_mirror(truth["pose"][pick, :3].to(pose))
        return cam, pose

    monkeypatch.setattr(solve, "_stage1", wrong_turn)
    camera = {"camera": "perspective", "focal": truth["focal"][pick], "principal_point": truth["pp"][pick]}
    errors = {}
    for mirrored in (0, FitConfig().mirror_starts):
        cfg = FitConfig(noise_px=2.0, mirror_starts=mirrored, jump_iters=0)
        result = fit(anny_model, truth["kp2d"][pick], "blazepose27", config=cfg, **camera)
        errors[mirrored] = _pa_mpjpe_mm(result.output.keypoints["blazepose27"], truth["kp3"][pick])
    assert FitConfig().mirror_starts == 3
    # measured: 28.2 mm both ways for the first (its fit turns back on its own), 70.1 → 15.8 mm
    # for the second
    gain = errors[0] - errors[3]
    assert float(gain.max()) > 40.0 and float(errors[3].max()) < 30.0 and bool((gain > -1.0).all()), errors


def test_jumps_find_a_limb_at_its_other_depth(anny_model) -> None:
    """``jump_iters``: from one start, 2D alone, limbs often end at the wrong
    depth; refitting each person's fit and its kinematic jumps and keeping the
    lowest energy never raises a person's energy and brings the fits nearer
    the truth (measured: mean PA-MPJPE 68.8 → 52.4 mm on these 12, one body
    237.7 → 82.8 mm, two more nearer by 16 and 19 mm, the median unmoved at
    46.2; before 2026-12-07's straight elbows, the median 54 → 39 mm)."""
    truth = _synthetic_photos(anny_model, 12, seed=0)
    camera = {"camera": "perspective", "focal": truth["focal"], "principal_point": truth["pp"]}
    runs = {}
    for iters in (0, 60):
        cfg = FitConfig(noise_px=2.0, hypotheses=1, jump_iters=iters)
        result = fit(anny_model, truth["kp2d"], "blazepose27", config=cfg, **camera)
        runs[iters] = (sum(result.losses.values()),
                       _pa_mpjpe_mm(result.output.keypoints["blazepose27"], truth["kp3"]))
    (e0, pa0), (e1, pa1) = runs[0], runs[60]
    assert (e1 <= e0 + 1e-3).all(), (e0, e1)
    assert float(pa1.mean()) < float(pa0.mean()) - 10.0, (pa0, pa1)
    assert float((pa0 - pa1).max()) > 100.0 and int((pa0 - pa1 > 15.0).sum()) >= 2, (pa0, pa1)


def test_each_person_can_have_a_noise_of_its_own(anny_model) -> None:
    """``fit(noise_px=...)``: one σ per person (people placed at different
    scales, e.g. crops). The same σ for all is the config's ``noise_px``, bit
    for bit; the same person told a smaller σ lies closer to its keypoints."""
    truth = _synthetic_photos(anny_model, 1, seed=3)
    kp2d = truth["kp2d"].expand(2, -1, -1)
    camera = {"camera": "perspective", "focal": truth["focal"].expand(2),
              "principal_point": truth["pp"].expand(2, 2)}
    cfg = FitConfig(hypotheses=1)
    by_config = fit(anny_model, kp2d, "blazepose27", config=replace(cfg, noise_px=2.0), **camera)
    per_person = fit(anny_model, kp2d, "blazepose27", config=cfg, noise_px=torch.tensor([2.0, 2.0]),
                     **camera)
    assert torch.equal(by_config.pose, per_person.pose) and torch.equal(by_config.cam, per_person.cam)
    mixed = fit(anny_model, kp2d, "blazepose27", config=replace(cfg, noise_px=2.0),
                noise_px=[0.5, 8.0], **camera)  # the keyword replaces the config's σ
    seen = kp2d[0, :, 2] > 0
    tight, loose = (_median(mixed.residuals_px[i][seen]) for i in (0, 1))
    assert tight < 0.5 * loose, (tight, loose)  # measured 0.55 vs 2.2 px


def test_a_start_that_wanders_off_does_not_spoil_the_fit(anny_model) -> None:
    """Body 75 of the seed-0 synthetic set, fitted alone from 2D: stage 1's
    L-BFGS (one run over both starting orientations) once carried a start onto
    the robust term's plateau, its parameters to ~1e6 and its loss to NaN, and
    the NaN then spread to every stage-2 hypothesis. Each row now has its own
    L-BFGS, whose loss never rises."""
    body = {k: v[75:76] for k, v in _synthetic(anny_model, 100, 0).items()}
    result = fit(anny_model, body["kp2d"], "body25", camera="weak", crop_size=CROP)
    assert torch.isfinite(result.pose).all() and torch.isfinite(result.cam).all()
    seen = body["kp2d"][0, :, 2] > 0
    assert _median(result.residuals_px[0][seen]) < 3.0
    assert float(_pa_mpjpe_mm(result.output.keypoints["body25"], body["kp3"])) < 80.0


def test_a_person_fits_the_same_alone_as_in_a_batch(anny_model) -> None:
    """Each row (person × start) has its own L-BFGS and budget and the same
    starting poses, so a person's fit does not depend on who else is in the
    batch. Float64 with a short schedule, where round-off cannot yet grow into
    a different path: batch and alone agree to ~1e-12 (checked to 1e-9)."""
    from openhmr.body.anny import Anny

    model = Anny(dtype=torch.float64)
    truth = {k: v.double() for k, v in _synthetic(anny_model, 3, seed=5).items()}
    cfg = FitConfig(stage1_iters=15, stage2_iters=(10, 10, 10))
    for kw in ({}, {"keypoints3d": truth["kp3_obs"], "keypoints3d_set": "body25"}):
        together = fit(model, truth["kp2d"], "body25", config=cfg, **kw)
        for i in range(3):
            one = {k: v[i:i + 1] for k, v in kw.items() if isinstance(v, torch.Tensor)}
            alone = fit(model, truth["kp2d"][i:i + 1], "body25", config=cfg,
                        **{**kw, **one})
            torch.testing.assert_close(alone.pose[0], together.pose[i], rtol=0, atol=1e-9)
            torch.testing.assert_close(alone.cam[0], together.cam[i], rtol=0, atol=1e-9)
            torch.testing.assert_close(alone.betas[0], together.betas[i], rtol=0, atol=1e-9)
    # A companion who shows too little torso for stage 1 (both shoulders and a
    # hip missing) is fitted on all its keypoints; the others keep their torso.
    from openhmr.body.keypoints import get_set

    names = get_set("body25").names
    partial = truth["kp2d"].clone()
    for name in ("left_shoulder", "right_shoulder", "left_hip"):
        partial[1, names.index(name), 2] = 0.0
    together = fit(model, partial[:2], "body25", config=cfg)
    alone = fit(model, partial[:1], "body25", config=cfg)
    torch.testing.assert_close(alone.pose[0], together.pose[0], rtol=0, atol=1e-9)
    torch.testing.assert_close(alone.cam[0], together.cam[0], rtol=0, atol=1e-9)


def test_fit_from_an_initial_estimate(anny_model) -> None:
    """``init`` (hmr+fit): starting near the truth, the fit improves on the start."""
    truth = _synthetic(anny_model, 2, seed=5)
    g = torch.Generator().manual_seed(0)
    pose0 = truth["pose"] + 0.15 * torch.randn(truth["pose"].shape, generator=g)
    init = FitInit(cam=truth["cam"] * torch.tensor([1.1, 1.0, 1.0]), pose=pose0,
                   betas=torch.zeros(2, 6))
    start = anny_model(pose0, torch.zeros(2, 6)).keypoints["body25"]
    start2d = (init.cam[:, None, :1] * (start[..., :2] + init.cam[:, None, 1:]) + 1) * CROP / 2
    cfg = FitConfig(stage1_iters=10, stage2_iters=(15, 15), pose_weights=(100.0, 25.0),
                    shape_weights=(50.0, 20.0))
    result = fit(anny_model, truth["kp2d"], "body25", init=init, config=cfg)
    before = _median((start2d - truth["clean"]).norm(dim=-1))
    after = _median((result.keypoints2d - truth["clean"]).norm(dim=-1))
    assert after < 3.0 < before


def test_a_poor_initial_estimate_does_not_shrink_the_body_to_a_point(smpl_model) -> None:
    """hmr+fit from a poor network estimate (a wrong pose, a scale below 0):
    its camera alone drifted to s = 1e-4, a body shrunk to a point 100 px
    from every keypoint, written without a word. The same pose with the
    camera from the torso is started too, and the better one kept."""
    g = torch.Generator().manual_seed(1)
    pose = torch.zeros(1, 72)
    pose[:, 0] = math.pi
    pose[:, 3:] = 0.2 * torch.randn(1, 69, generator=g)
    with torch.no_grad():
        points = smpl_model(pose, torch.zeros(1, 10)).keypoints["lsp14"]
    cam = torch.tensor([[0.9, 0.0, 0.1]])
    kp2d = torch.cat([112 * (cam[:, :1, None] * (points[..., :2] + cam[:, None, 1:]) + 1), torch.ones(1, 14, 1)], -1)
    kp3d = torch.cat([points, torch.ones(1, 14, 1)], -1)
    poor = pose.clone()
    poor[:, :3] = torch.tensor([[0.3, 2.5, 0.4]])
    poor[:, 3:] = 0.9 * torch.randn(1, 69, generator=torch.Generator().manual_seed(10))
    result = fit(smpl_model, kp2d, "lsp14", keypoints3d=kp3d,
                 init=FitInit(torch.tensor([[-0.08, -0.44, -0.53]]), poor, torch.zeros(1, 10)))
    assert float(result.residuals_px.nanmedian()) < 2.0
    assert abs(float(result.cam[0, 0]) - 0.9) < 0.05


def _moving_bodies(model, videos: int, frames: int, seed: int) -> dict[str, torch.Tensor]:
    """Bodies moving at constant speed between two random poses: per frame
    (frames, videos, ...) truth and observations noisy as in :func:`_synthetic`,
    the noise drawn anew in every frame."""
    g = torch.Generator().manual_seed(seed)
    start, end = model.random_pose(videos, g), model.random_pose(videos, g)
    end[:, :3] = start[:, :3]
    shape = model.random_shape(videos, g)
    cam = torch.cat([0.75 + 0.1 * torch.rand(videos, 1, generator=g), torch.zeros(videos, 2)], 1)
    seq: dict[str, list[torch.Tensor]] = {"kp3": [], "kp2d": [], "kp3_obs": []}
    for f in range(frames):
        a = f / (frames - 1)
        with torch.no_grad():
            kp3 = model((1 - a) * start + a * end, shape).keypoints["body25"]
        clean = (cam[:, None, :1] * (kp3[..., :2] + cam[:, None, 1:]) + 1) * CROP / 2
        noisy = clean + 2.0 * torch.randn(clean.shape, generator=g)
        conf = (torch.rand(clean.shape[:2], generator=g) >= 0.2).float()
        centred = kp3 - 0.5 * (kp3[:, 9:10] + kp3[:, 12:13])
        obs3 = centred + 0.02 * torch.randn(centred.shape, generator=g)
        seq["kp3"].append(kp3)
        seq["kp2d"].append(torch.cat([noisy, conf[..., None]], -1))
        seq["kp3_obs"].append(torch.cat([obs3, torch.ones_like(obs3[..., :1])], -1))
    return {k: torch.stack(v) for k, v in seq.items()}


def test_tracking_a_video(anny_model) -> None:
    """``previous`` (video tracking): on noisy keypoints of moving bodies,
    continuing the previous frame's fit is as accurate as fitting each frame
    from scratch; with a temporal term on the rotations (λ_t > 0) the fitted
    joints also jitter less (lower acceleration error). The temporal terms
    report (the rotation term only when λ_t > 0)."""
    seq = _moving_bodies(anny_model, videos=2, frames=8, seed=3)
    per_frame, tracked, held = [], [], []
    previous = {"tracked": None, "held": None}
    configs = {"tracked": FitConfig(), "held": FitConfig(temporal_weight=400.0)}
    for f in range(seq["kp2d"].shape[0]):
        kw = {"keypoints3d": seq["kp3_obs"][f], "keypoints3d_set": "body25", "crop_size": CROP}
        per_frame.append(fit(anny_model, seq["kp2d"][f], "body25", **kw).output.keypoints["body25"])
        for name, out in (("tracked", tracked), ("held", held)):
            result = fit(anny_model, seq["kp2d"][f], "body25", previous=previous[name],
                         config=configs[name], **kw)
            tracking = previous[name] is not None
            assert ("temporal_shape" in result.losses) == tracking
            assert ("temporal" in result.losses) == (tracking and name == "held")
            previous[name] = FitInit(result.cam, result.pose, result.betas)
            out.append(result.output.keypoints["body25"])

    def accel_error_mm(fitted: list[torch.Tensor]) -> float:
        rel = lambda x: x - 0.5 * (x[:, :, 9:10] + x[:, :, 12:13])  # noqa: E731
        d = rel(torch.stack(fitted).detach()) - rel(seq["kp3"])
        return float((d[2:] - 2 * d[1:-1] + d[:-2]).norm(dim=-1).mean()) * 1000.0

    def pa_mm(fitted: list[torch.Tensor]) -> float:
        return float(_pa_mpjpe_mm(torch.cat(fitted).detach(), seq["kp3"].flatten(0, 1)).mean())

    assert pa_mm(tracked) <= min(30.0, pa_mm(per_frame) + 3.0)
    assert accel_error_mm(held) < 0.8 * accel_error_mm(per_frame)
    assert pa_mm(held) <= min(30.0, pa_mm(per_frame) + 3.0)


def test_perspective_camera(anny_model) -> None:
    """Pinhole camera in image pixels: translation solved from the torso init."""
    g = torch.Generator().manual_seed(7)
    n, focal, pp = 2, 1500.0, torch.tensor([320.0, 240.0])
    pose, shape = anny_model.random_pose(n, g, max_yaw=0.3), anny_model.random_shape(n, g)
    with torch.no_grad():
        kp3 = anny_model(pose, shape).keypoints["coco17"]
    trans = torch.tensor([[0.2, 0.1, 5.0], [-0.3, 0.0, 6.5]])
    p = kp3 + trans[:, None]
    clean = focal * p[..., :2] / p[..., 2:] + pp
    kp2d = torch.cat([clean + torch.randn(clean.shape, generator=g), torch.ones(n, 17, 1)], -1)
    result = fit(anny_model, kp2d, "coco17", camera="perspective", focal=focal,
                 principal_point=pp)
    assert result.model_keypoint_set == "coco17"
    err = (result.keypoints2d - clean).norm(dim=-1)
    assert _median(err) < 3.0
    # Depth follows from the body's size: within 15 % of the truth.
    assert ((result.cam[:, 2] / trans[:, 2]) - 1).abs().max() < 0.15
    torch.testing.assert_close(result.project(result.output.keypoints["coco17"]),
                               result.keypoints2d, atol=1e-3, rtol=0)


def test_a_perspective_start_behind_the_camera_starts_from_the_torso(anny_model) -> None:
    """An ``init`` translation with the body behind the camera (−z forward, as
    OpenGL's) would leave the fit there, its depth clamped and without a
    gradient (it ended ~760,000 px off): that person starts from the torso's
    camera instead, and a good start next to it is kept."""
    g = torch.Generator().manual_seed(7)
    focal, pp = 1500.0, torch.tensor([960.0, 540.0])
    pose, shape = anny_model.random_pose(2, g, max_yaw=0.3), anny_model.random_shape(2, g)
    with torch.no_grad():
        kp3 = anny_model(pose, shape).keypoints["coco17"]
    trans = torch.tensor([[0.2, 0.1, 5.0], [-0.3, 0.0, 6.0]])
    p = kp3 + trans[:, None]
    clean = focal * p[..., :2] / p[..., 2:] + pp
    kp2d = torch.cat([clean, torch.ones(2, 17, 1)], -1)
    pose0 = torch.zeros(2, anny_model.pose_size)
    pose0[:, 0] = math.pi
    init = FitInit(torch.tensor([[0.2, 0.1, -5.0], [-0.3, 0.0, 6.0]]), pose0,
                   torch.zeros(2, anny_model.num_betas))
    result = fit(anny_model, kp2d, "coco17", camera="perspective", focal=focal, principal_point=pp,
                 init=init)
    err = (result.keypoints2d - clean).norm(dim=-1).median(dim=1).values
    assert (err < 3.0).all(), err
    assert ((result.cam[:, 2] / trans[:, 2]) - 1).abs().max() < 0.15


def test_fit_works_for_smpl(smpl_model) -> None:
    """Any BodyModel: the synthetic SMPL (no forward_keypoints) fitted to LSP-14."""
    pose = torch.zeros(1, 72)
    pose[:, 0] = math.pi
    pose[0, 3 * 16 + 2] = -0.6  # left shoulder
    pose[0, 3 * 5] = 0.8  # right knee
    with torch.no_grad():
        kp3 = smpl_model(pose, torch.zeros(1, 10)).keypoints["lsp14"]
    cam = torch.tensor([[0.8, 0.0, 0.05]])
    clean = (cam[:, None, :1] * (kp3[..., :2] + cam[:, None, 1:]) + 1) * CROP / 2
    kp2d = torch.cat([clean, torch.ones(1, 14, 1)], -1)
    cfg = FitConfig(stage1_iters=10, stage2_iters=(25,), pose_weights=(25.0,),
                    shape_weights=(20.0,))
    result = fit(smpl_model, kp2d, "lsp14", config=cfg)
    assert result.model_keypoint_set == "lsp14"
    assert result.pose.shape == (1, 72) and result.betas.shape == (1, 10)
    assert _median((result.keypoints2d - clean).norm(dim=-1)) < 3.0


def test_keypoints_from_another_set_are_mapped(anny_model) -> None:
    """A BlazePose-33 input is matched by name (Anny's blazepose27 covers 27
    of its points, all but the eye and mouth corners); points the model lacks
    come back as NaN."""
    from openhmr.body.keypoints import convert, get_set

    assert choose_model_set(anny_model, "blazepose33") == "blazepose27"
    assert choose_model_set(anny_model, "lsp14") == "lsp14"
    assert choose_model_set(anny_model, "blazepose33", "body25") == "body25"
    with pytest.raises(InputError, match="no keypoint set 'smpl24'"):
        choose_model_set(anny_model, "blazepose33", "smpl24")
    truth = _synthetic(anny_model, 1, seed=3)
    kp, filled = convert(truth["kp2d"], "body25", "blazepose33")
    kp[..., ~filled, 2] = 0.0
    cfg = FitConfig(stage2_iters=(20, 20), pose_weights=(100.0, 25.0), shape_weights=(50.0, 20.0))
    result = fit(anny_model, kp, "blazepose33", config=cfg)
    assert result.model_keypoint_set == "blazepose27"
    modelled = torch.tensor([n in get_set("blazepose27").names for n in get_set("blazepose33").names])
    assert result.keypoints2d.shape == (1, 33, 2) and int(modelled.sum()) == 27
    assert torch.isnan(result.keypoints2d[0, ~modelled]).all()
    assert torch.isfinite(result.keypoints2d[0, modelled]).all()
    assert _median(result.residuals_px[0, filled]) < 4.0


def test_hand_points_turn_the_wrists(anny_model) -> None:
    """BlazePose's pinky, index and thumb points orient Anny's hands: on bodies
    with turned wrists, the fitted hand points land nearer their true
    projections with them than without (``model_keypoint_set="body25"``,
    the fit before they existed), while the body fits as well."""
    from openhmr.body.keypoints import convert, get_set

    n = 3
    g = torch.Generator().manual_seed(11)
    pose = anny_model.random_pose(n, g).reshape(n, -1, 3)
    wrists = [anny_model.joint_names.index(f"{side}_wrist") for side in ("left", "right")]
    pose[:, wrists] = (torch.rand(n, 2, 3, generator=g) * 2 - 1) * 0.6
    pose = pose.reshape(n, -1)
    with torch.no_grad():
        kp3 = anny_model(pose, anny_model.random_shape(n, g)).keypoints["blazepose27"]
    cam = torch.tensor([[0.8, 0.0, 0.0]]).expand(n, 3)
    clean = (cam[:, None, :1] * (kp3[..., :2] + cam[:, None, 1:]) + 1) * CROP / 2
    kp2d, filled = convert(torch.cat([clean, torch.ones(n, 27, 1)], -1), "blazepose27", "blazepose33")
    centred = kp3 - 0.5 * (kp3[:, 17:18] + kp3[:, 18:19])  # blazepose27 hips: 17 left, 18 right
    kp3d, _ = convert(torch.cat([centred, torch.ones(n, 27, 1)], -1), "blazepose27", "blazepose33")
    hands = torch.tensor([n.endswith(("pinky", "index", "thumb")) for n in get_set("blazepose33").names])
    errors = {}
    for label, model_set in (("with hands", None), ("without", "body25")):
        result = fit(anny_model, kp2d, "blazepose33", keypoints3d=kp3d,
                     config=FitConfig(model_keypoint_set=model_set))
        with torch.no_grad():
            fitted = anny_model(result.pose, result.betas).keypoints["blazepose27"]
        px = (result.cam[:, None, :1] * (fitted[..., :2] + result.cam[:, None, 1:]) + 1) * CROP / 2
        err = (px.detach() - clean).norm(dim=-1)
        in27 = [get_set("blazepose27").names.index(x) for x in ("left_pinky", "right_pinky", "left_index",
                                                                 "right_index", "left_thumb", "right_thumb")]
        body = [i for i in range(27) if i not in in27]
        errors[label] = (_median(err[:, in27]), _median(err[:, body]))
    assert bool(filled[hands].all())
    assert errors["with hands"][0] < 0.6 * errors["without"][0], errors
    assert errors["with hands"][1] < errors["without"][1] + 0.3, errors


def test_robust_and_prior_terms(anny_model) -> None:
    r2 = torch.tensor([0.0, 1.0, 1e6])
    rho = gmof(r2, 10.0)
    assert rho[0] == 0 and rho[1] == pytest.approx(100 / 101) and rho[2] < 100.0
    w = joint_stiffness(anny_model)
    assert w[0] == 0 and w[anny_model.joint_names.index("spine1")] > w[1] == 1
    from openhmr.body.keypoints import get_set

    class Named:  # an SMPL-like model without its own bend axes
        num_joints = 24
        joint_names = get_set("smpl24").names

    axes = bend_axes(Named())  # SMPLify's axes by joint name
    assert axes[18].tolist() == [0.0, -1.0, 0.0] and axes[4].tolist() == [1.0, 0.0, 0.0]
    # SMPLify's term written out: exp(θ[[55, 58, 12, 15]]·[1, −1, −1, −1])² summed (left and right
    # elbow about y, left and right knee about x), on random poses
    pose = 0.8 * torch.randn(6, 72, generator=torch.Generator().manual_seed(3))
    smplify = torch.exp(pose[:, [55, 58, 12, 15]] * torch.tensor([1.0, -1.0, -1.0, -1.0])).pow(2).sum(-1)
    torch.testing.assert_close(bend_guard(pose, axes), smplify, rtol=1e-6, atol=0)
    knee_back = torch.zeros(1, 72)
    knee_back[0, 12] = -1.0
    assert bend_guard(knee_back, axes) > bend_guard(torch.zeros(1, 72), axes) + 5


def test_upright_prior_scores_the_tilt_not_the_heading() -> None:
    """(1 − cos τ)/σ², τ the tilt of the model's up axis from the image's up
    (−y): zero for Anny's upright root (π about x) turned to face any way,
    ≈ ½(τ/σ)² for a small lean towards the camera or sideways."""
    upright = axis_angle_to_matrix(torch.tensor([[math.pi, 0.0, 0.0]], dtype=torch.float64))
    roots = []
    for axis, angle in ((1, 1.2), (1, -2.5), (0, 0.1), (2, 0.1), (0, 0.6)):  # yaw, yaw, lean, side, lean
        aa = torch.zeros(1, 3, dtype=torch.float64)
        aa[0, axis] = angle
        roots.append(matrix_to_axis_angle(axis_angle_to_matrix(aa) @ upright))
    value = upright_prior(torch.cat(roots), 0.2)
    expected = torch.tensor([0.0, 0.0, 1 - math.cos(0.1), 1 - math.cos(0.1), 1 - math.cos(0.6)],
                            dtype=torch.float64) / 0.04
    torch.testing.assert_close(value, expected, atol=1e-5, rtol=1e-5)
    assert abs(float(value[2]) - 0.5 * (0.1 / 0.2) ** 2) < 1e-3


def test_bad_inputs_raise_input_errors(anny_model) -> None:
    good = torch.zeros(1, 17, 3)
    with pytest.raises(InputError, match=r"\(B, 17, 3\)"):
        fit(anny_model, torch.zeros(1, 14, 3), "coco17")
    with pytest.raises(InputError, match="unknown keypoint set"):
        fit(anny_model, good, "nope")
    with pytest.raises(InputError, match="camera"):
        fit(anny_model, good, "coco17", camera="fisheye")
    with pytest.raises(InputError, match="no confident keypoint"):
        fit(anny_model, good, "coco17")
    good[..., 2] = 1.0
    with pytest.raises(InputError, match="span 0 px, too little to fit"):  # all in one place
        fit(anny_model, good, "coco17")
    one = torch.zeros(1, 17, 3)
    one[0, 0] = torch.tensor([100.0, 50.0, 1.0])
    with pytest.raises(InputError, match="only one confident keypoint"):
        fit(anny_model, one, "coco17")
    good[..., :2] = torch.linspace(60, 160, 17)[:, None]
    with pytest.raises(InputError, match="stage1_keypoints must be 'torso' or 'all'"):
        fit(anny_model, good, "coco17", config=FitConfig(stage1_keypoints="legs"))
    with pytest.raises(InputError, match="focal"):
        fit(anny_model, good, "coco17", camera="perspective")
    for noise in (0.0, -1.0, math.nan):
        with pytest.raises(InputError, match="noise_px"):
            fit(anny_model, good, "coco17", config=FitConfig(noise_px=noise))
    for sigma in (0.0, -0.2, math.inf):
        with pytest.raises(InputError, match="upright_sigma must be a positive angle"):
            fit(anny_model, good, "coco17", config=FitConfig(upright_sigma=sigma))
    for exponent in (0.0, -2.0, math.nan):
        with pytest.raises(InputError, match="told_shape_exponent must be a number ≥ 1"):
            fit(anny_model, good, "coco17", config=FitConfig(told_shape_exponent=exponent))
        with pytest.raises(InputError, match="shape_prior_exponent must be a number ≥ 1"):
            fit(anny_model, good, "coco17", config=FitConfig(shape_prior_exponent=exponent))
    with pytest.raises(InputError, match="one σ or one per person"):
        fit(anny_model, good, "coco17", noise_px=[1.0, 2.0])
    with pytest.raises(InputError, match="noise_px"):
        fit(anny_model, good, "coco17", noise_px=torch.tensor([-1.0]))
    with pytest.raises(InputError, match="previous pose"):
        fit(anny_model, good, "coco17", previous=FitInit(torch.zeros(1, 3), torch.zeros(1, 5),
                                                         torch.zeros(1, 6)))


def _photo(name: str) -> np.ndarray:
    from PIL import Image

    path = SHARED / "reference" / "images" / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (../shared not beside the repository)")
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("name", ["coco2.png", "coco3.png", "random.jpg"])
def test_fit_to_blazepose_on_photos(anny_model, name: str) -> None:
    """Acceptance 2: the fitted mesh's keypoints lie within a median 5 px of
    BlazePose's (visible, matched) keypoints, on the person's 224-px crop.
    (BlazePose finds nobody in coco5.png: test_detect says so.)"""
    pytest.importorskip("mediapipe")
    from openhmr.detect import find_person
    from openhmr.fit import fit_detection

    image = _photo(name)
    detection = find_person(image)  # as the demo finds the person
    fitted = fit_detection(image, detection, anny_model)
    assert fitted.crop.shape == (224, 224, 3)
    visible = fitted.keypoints2d_crop[:, 2] >= 0.5
    residuals = fitted.result.residuals_px[0].numpy()
    usable = visible & np.isfinite(residuals)
    assert usable.sum() >= 10
    assert float(np.median(residuals[usable])) <= 5.0
    # Crop pixels map back onto the detection in the image.
    back = fitted.transform.crop_to_image(fitted.keypoints2d_crop[:, :2])
    np.testing.assert_allclose(back, detection.keypoints2d[:, :2], atol=1e-3)


# --------------------------------------------------------------------------- the energy's parts
def _energy_parts(smpl_model, conf: float = 1.0, shift3d=(0.0, 0.0, 0.0)):
    """SMPL in a random pose, its lsp14 keypoints projected by a weak camera
    (crop pixels, confidence ``conf``) and its 3D keypoints moved by
    ``shift3d`` metres: the Energy of those targets, and the true parameters."""
    from openhmr.fit.energy import Energy
    from openhmr.fit.targets import read_targets, read_targets3d

    g = torch.Generator().manual_seed(3)
    pose, betas = 0.3 * torch.randn(2, 72, generator=g), 0.5 * torch.randn(2, 10, generator=g)
    cam = torch.tensor([[0.8, 0.05, -0.1], [0.7, -0.1, 0.05]])
    kp3 = smpl_model(pose, betas).keypoints["lsp14"]
    pixels = (cam[:, None, :1] * (kp3[..., :2] + cam[:, None, 1:]) + 1) * CROP / 2
    ones = torch.ones(2, 14, 1)
    kp2d = torch.cat([pixels, conf * ones], -1)
    kp3d = torch.cat([kp3 + torch.tensor(shift3d), ones], -1)
    cfg = FitConfig()
    targets = read_targets(smpl_model, kp2d, "lsp14", cfg, torch.float32, torch.device("cpu"))
    targets3d = read_targets3d(smpl_model, kp3d, "lsp14", "lsp14", cfg, 2, torch.float32, torch.device("cpu"))
    energy = Energy(smpl_model, cfg, "weak", CROP, None, None, targets, targets3d, told=False, track=None)
    return energy, cam, pose, betas


def test_the_2d_term_is_weighted_by_the_confidences(smpl_model):
    """Each keypoint's robust residual counts in proportion to its confidence:
    the same bodies, 10 px off, score exactly half with every confidence 0.5."""
    terms = {}
    for conf in (1.0, 0.5):
        energy, cam, pose, betas = _energy_parts(smpl_model, conf)
        off = cam + torch.tensor([0.0, 10.0 / (CROP / 2) / 0.8, 0.0])  # ~10 px to the side
        terms[conf] = energy.data_terms(off, pose, betas, energy.all_mask, torch.arange(2))["data"]
    assert (terms[1.0] > 1.0).all()
    torch.testing.assert_close(terms[0.5], 0.5 * terms[1.0], rtol=1e-6, atol=0)


def test_keypoints_below_the_confidence_threshold_are_ignored(smpl_model):
    """A keypoint below ``conf_threshold`` (0.2) counts for nothing; one at
    or above it keeps its confidence as its weight."""
    from openhmr.fit.targets import read_targets

    kp2d = torch.cat([112 + 50 * torch.randn(1, 14, 2, generator=torch.Generator().manual_seed(0)),
                      torch.full((1, 14, 1), 0.9)], -1)
    kp2d[0, 3, 2], kp2d[0, 4, 2] = 0.1, 0.2
    targets = read_targets(smpl_model, kp2d, "lsp14", FitConfig(), torch.float32, torch.device("cpu"))
    from openhmr.body.keypoints import get_set

    lsp = get_set("lsp14").names
    assert targets.names == tuple(lsp)
    conf = dict(zip(targets.names, targets.conf[0].tolist()))
    assert conf[lsp[3]] == 0.0 and conf[lsp[4]] == pytest.approx(0.2) and conf[lsp[0]] == pytest.approx(0.9)


def test_3d_keypoints_are_compared_centred_on_the_hips(smpl_model):
    """The 3D term compares hip-centred points: at the true pose and shape it
    is zero wherever the labels stand (camera-aligned labels carry the
    camera's translation), and positive at a wrong pose."""
    energy, cam, pose, betas = _energy_parts(smpl_model, shift3d=(0.3, -0.2, 5.0))
    at_truth = energy.data_terms(cam, pose, betas, energy.all_mask, torch.arange(2))
    assert at_truth["data"].abs().max() < 1e-6
    assert at_truth["3d"].abs().max() < 1e-6
    wrong = energy.data_terms(cam, pose + 0.2, betas, energy.all_mask, torch.arange(2))
    assert (wrong["3d"] > 1.0).all()


def test_3d_keypoints_without_their_hips_are_left_out(smpl_model):
    """A person whose 3D hips are missing (NaN) or not confident has no centre
    to compare with the model's: the person's 3D term is dropped, not centred
    on a hip put at the origin; the other people keep theirs."""
    from openhmr.fit.targets import read_targets3d

    g = torch.Generator().manual_seed(4)
    kp3 = smpl_model(0.2 * torch.randn(3, 72, generator=g), torch.zeros(3, 10)).keypoints["lsp14"]
    kp3d = torch.cat([kp3, torch.ones(3, 14, 1)], -1)
    kp3d[0, 3, :3] = float("nan")  # lsp14's left hip
    kp3d[1, 2, 3] = 0.0  # right hip, confidence 0
    t3 = read_targets3d(smpl_model, kp3d, "lsp14", "lsp14", FitConfig(), 3, torch.float32, torch.device("cpu"))
    assert t3.conf[:2].eq(0).all() and t3.conf[2].eq(1).all()
    assert torch.isfinite(t3.points).all()


def test_a_person_left_without_3d_is_fitted_as_from_2d_alone(smpl_model):
    """One 3D hip not confident (BlazePose's visibility for an occluded hip)
    drops the person's 3D term; the person then gets the several starts of a
    2D-only fit (it got one, worse than giving no 3D at all), and told the
    noise its kinematic jumps, while the others of the batch keep their 3D fit
    from one start."""
    g = torch.Generator().manual_seed(7)
    pose = torch.zeros(3, 72)
    pose[:, 0] = math.pi
    pose[:, 3:] = 0.3 * torch.randn(3, 69, generator=g)
    cam = torch.tensor([[0.9, 0.0, 0.1]]).repeat(3, 1)
    with torch.no_grad():
        kp3 = smpl_model(pose, torch.zeros(3, 10)).keypoints["lsp14"]
    kp = torch.cat([(cam[:, None, :1] * (kp3[..., :2] + cam[:, None, 1:]) + 1) * CROP / 2,
                    torch.ones(3, 14, 1)], -1)
    kp3d = torch.cat([kp3, torch.ones(3, 14, 1)], -1)
    kp3d[1, 3, 3] = 0.0  # person 1's left hip
    cfg = FitConfig(stage1_iters=10, stage2_iters=(15,), pose_weights=(25.0,), shape_weights=(20.0,))
    mixed = fit(smpl_model, kp, "lsp14", keypoints3d=kp3d, config=cfg)
    alone_2d = fit(smpl_model, kp[1:2], "lsp14", config=cfg)
    one_start = fit(smpl_model, kp[1:2], "lsp14", config=replace(cfg, hypotheses=1))
    assert float((alone_2d.pose - one_start.pose).abs().max()) > 1e-2  # the starts matter here
    torch.testing.assert_close(mixed.pose[1:2], alone_2d.pose, rtol=0, atol=1e-4)
    with_3d = fit(smpl_model, kp[[0, 2]], "lsp14", keypoints3d=kp3d[[0, 2]], config=cfg)
    torch.testing.assert_close(mixed.pose[[0, 2]], with_3d.pose, rtol=0, atol=1e-4)
    # Told the noise, that person gets the kinematic jumps of a 2D-only fit too (until
    # 2026-12-07 only a batch without any 3D did), the others none.
    told = replace(cfg, noise_px=1.0, noise_stage_iters=10, jump_iters=10)
    mixed = fit(smpl_model, kp, "lsp14", keypoints3d=kp3d, config=told)
    alone_2d = fit(smpl_model, kp[1:2], "lsp14", config=told)
    unjumped = fit(smpl_model, kp[1:2], "lsp14", config=replace(told, jump_iters=0))
    assert float((alone_2d.pose - unjumped.pose).abs().max()) > 1.0  # here a jump wins
    # The told step's stiff energy grows the batched kernels' round-off along the
    # path (measured: 0.0045 rad, 7 mm, between the batch and the person alone; the
    # jump's own change is 54 mm).
    torch.testing.assert_close(mixed.pose[1:2], alone_2d.pose, rtol=0, atol=2e-2)
    with_3d = fit(smpl_model, kp[[0, 2]], "lsp14", keypoints3d=kp3d[[0, 2]], config=told)
    torch.testing.assert_close(mixed.pose[[0, 2]], with_3d.pose, rtol=0, atol=1e-3)


def test_a_camera_or_noise_given_with_a_graph_is_a_constant(smpl_model):
    """A focal length, principal point or noise computed with autograd on (or a
    leaf that wants a gradient) is read as its value: no 'backward through the
    graph a second time', no gradient written into the caller's tensor."""
    pose = torch.zeros(1, 72)
    pose[:, 0] = math.pi
    with torch.no_grad():
        points = smpl_model(pose, torch.zeros(1, 10)).keypoints["lsp14"] + torch.tensor([0.0, 0.0, 5.0])
    pixels = 1000.0 * points[..., :2] / points[..., 2:] + 320.0
    kp = torch.cat([pixels, torch.ones(1, 14, 1)], -1)
    log_f = torch.tensor(math.log(1000.0), requires_grad=True)
    leaf_pp = torch.tensor([320.0, 320.0], requires_grad=True)
    cfg = FitConfig(stage1_iters=5, stage2_iters=(5,), pose_weights=(25.0,), shape_weights=(20.0,))
    result = fit(smpl_model, kp, "lsp14", camera="perspective", focal=log_f.exp(), principal_point=leaf_pp,
                 noise_px=log_f * 0.0 + 2.0, config=cfg)
    assert torch.isfinite(result.pose).all()
    assert log_f.grad is None and leaf_pp.grad is None and not result.focal.requires_grad


def test_settings_read_through_numpy_are_taken_or_refused_in_one_line(smpl_model):
    """stage2_iters as a numpy array (settings loaded from an npz) is a tuple of
    counts; a crop size given as text is one InputError, not a TypeError."""
    pose = torch.zeros(1, 72)
    pose[:, 0] = math.pi
    with torch.no_grad():
        kp3 = smpl_model(pose, torch.zeros(1, 10)).keypoints["lsp14"]
    kp = torch.cat([(0.9 * kp3[..., :2] + 1) * CROP / 2, torch.ones(1, 14, 1)], -1)
    cfg = FitConfig(stage1_iters=5, stage2_iters=np.array([5, 5]), pose_weights=(25.0, 10.0),
                    shape_weights=(20.0, 10.0), hypotheses=1)
    assert torch.isfinite(fit(smpl_model, kp, "lsp14", config=cfg).pose).all()
    with pytest.raises(InputError, match="crop_size must be a positive number of pixels, got '224'"):
        fit(smpl_model, kp, "lsp14", crop_size="224", config=cfg)


def test_residuals_of_non_finite_keypoints_are_nan(anny_model) -> None:
    """A keypoint given as NaN has no residual: it is no target at (0, 0)."""
    truth = _synthetic(anny_model, 1, seed=2)
    kp2d = truth["kp2d"].clone()
    kp2d[0, 0, :2] = float("nan")
    result = fit(anny_model, kp2d, "body25", config=FitConfig(stage1_iters=5, stage2_iters=(5, 5, 5)))
    assert torch.isnan(result.residuals_px[0, 0])
    assert torch.isfinite(result.residuals_px[0, 1:][kp2d[0, 1:, 2] > 0]).all()


@pytest.mark.parametrize("camera", ["weak", "perspective"])
def test_torso_init_recovers_the_camera_that_projected_the_torso(camera):
    """SMPLify's initialisation: for a torso whose shoulders and hips stand at
    one depth (where a pinhole maps midpoints to midpoints), the camera that projected the keypoints is recovered
    exactly (weak: scale and translation; pinhole: translation)."""
    from openhmr.fit.camera import project, torso_init

    names = ("left_shoulder", "right_shoulder", "left_hip", "right_hip", "left_wrist", "right_ankle")
    g = torch.Generator().manual_seed(1)
    points = torch.tensor([[0.2, -0.5, 0.05], [-0.2, -0.5, 0.05], [0.1, 0.0, 0.05], [-0.1, 0.0, 0.05],
                           [0.5, 0.1, 0.3], [-0.1, 0.9, -0.2]]).repeat(3, 1, 1)
    points = points + 0.05 * torch.randn(3, 1, 3, generator=g)  # the same shift for all: depths stay equal
    conf = torch.ones(3, 6)
    focal = principal = None
    if camera == "weak":
        cam = torch.tensor([[0.8, 0.1, -0.2], [1.1, -0.3, 0.1], [0.5, 0.0, 0.4]])
    else:
        cam = torch.tensor([[0.1, -0.2, 4.0], [-0.3, 0.1, 7.5], [0.0, 0.4, 2.5]])
        focal, principal = torch.tensor([500.0, 900.0, 1200.0]), torch.tensor([[112.0, 112.0], [300.0, 200.0],
                                                                            [640.0, 360.0]])
    target = project(points, cam, camera, CROP, focal, principal)
    found = torso_init(points, target, conf, names, camera, CROP, focal, principal)
    torch.testing.assert_close(found, cam, rtol=1e-5, atol=1e-5)


def test_side_views_back_views_and_handstands_find_their_orientation(anny_model) -> None:
    """Stage 1 starts from two upright guesses (facing the camera and away),
    yet a body turned sideways (90°), seen from the back (180°) or upside
    down (a handstand: 180° in the image plane) ends with its root within
    25° of the truth on photos told their noise (a review saw a side view
    fail with one start and 10 iterations, not with the fit's schedule)."""
    g = torch.Generator().manual_seed(0)
    turns = ((0.0, math.pi / 2, 0.0), (0.0, math.pi, 0.0), (0.0, 0.0, math.pi))
    pose, shape = anny_model.random_pose(3, g, max_yaw=0.0), anny_model.random_shape(3, g)
    turned = axis_angle_to_matrix(torch.tensor(turns, dtype=torch.float64)) @ axis_angle_to_matrix(pose[:, :3].double())
    pose[:, :3] = matrix_to_axis_angle(turned).to(pose.dtype)
    with torch.no_grad():
        kp3 = anny_model(pose, shape).keypoints["blazepose27"]
    focal, pp = torch.full((3,), 1200.0), torch.full((3, 2), 512.0)
    placed = kp3 + torch.tensor([0.0, 0.0, 3.5])
    clean = focal[:, None, None] * placed[..., :2] / placed[..., 2:] + pp[:, None]
    noisy = clean + 2.0 * torch.randn(clean.shape, generator=g)
    result = fit(anny_model, torch.cat([noisy, torch.ones_like(noisy[..., :1])], -1), "blazepose27",
                 camera="perspective", focal=focal, principal_point=pp, config=FitConfig(noise_px=2.0))
    relative = axis_angle_to_matrix(result.pose[:, :3].double()).transpose(1, 2) @ turned
    angle = torch.rad2deg(torch.arccos(((relative.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)))
    assert (angle < 25.0).all(), angle
    assert _median((result.keypoints2d - clean).norm(dim=-1)) <= 3.0


def test_starts_with_a_graph_and_calls_under_inference_mode(smpl_model) -> None:
    """An HMR estimate taken with autograd on, or Parameters, start a fit as
    their values do (detached: no 'backward through the graph a second time',
    no shape left unoptimised, no gradient written into the caller's tensors);
    a fit called under inference_mode or no_grad gives the fit made outside."""
    torch.manual_seed(0)
    pose = torch.zeros(2, 72)
    pose[:, 0] = math.pi
    pose[:, 3:] = 0.3 * torch.randn(2, 69)
    cam = torch.tensor([[0.9, 0.0, 0.1], [1.0, 0.05, 0.0]])
    with torch.no_grad():
        kp = (cam[:, None, :1] * (smpl_model(pose, torch.zeros(2, 10)).keypoints["cocoplus19"][..., :2]
                                  + cam[:, None, 1:]) + 1) * CROP / 2
    kp = torch.cat([kp, torch.ones(2, 19, 1)], -1)
    p0 = torch.zeros(2, 72)
    p0[:, 0] = math.pi
    c0, b0 = torch.tensor([[0.8, 0.0, 0.0]] * 2), torch.zeros(2, 10)
    cfg = FitConfig(stage1_iters=10, stage2_iters=(30,), pose_weights=(25.0,), shape_weights=(20.0,))
    plain = fit(smpl_model, kp, "cocoplus19", init=FitInit(c0, p0, b0), config=cfg)
    assert float((plain.betas - b0).abs().max()) > 0.05  # the shape is fitted

    w = torch.ones(1, requires_grad=True)
    with_graph = fit(smpl_model, kp, "cocoplus19", init=FitInit(c0 * w, p0 * w, b0 * w), config=cfg)
    params = [torch.nn.Parameter(x.clone()) for x in (c0, p0, b0)]
    leaves = fit(smpl_model, kp, "cocoplus19", init=FitInit(*params), config=cfg)
    tracked = fit(smpl_model, kp, "cocoplus19", previous=FitInit(c0 * w, p0 * w, b0 * w), config=cfg)
    assert tracked.pose.isfinite().all()
    assert w.grad is None and all(p.grad is None for p in params)
    with torch.inference_mode():
        quiet = fit(smpl_model, kp, "cocoplus19", init=FitInit(c0, p0, b0), config=cfg)
    with torch.no_grad():
        no_grad = fit(smpl_model, kp, "cocoplus19", init=FitInit(c0, p0, b0), config=cfg)
    for other in (with_graph, leaves, quiet, no_grad):
        torch.testing.assert_close(other.pose, plain.pose, rtol=0, atol=1e-6)
        torch.testing.assert_close(other.betas, plain.betas, rtol=0, atol=1e-6)
        torch.testing.assert_close(other.cam, plain.cam, rtol=0, atol=1e-6)


def test_a_body_model_built_under_inference_mode_is_one_line(smpl_arrays) -> None:
    """Its buffers are inference tensors, which no gradient goes through: one
    line saying where to build it, not torch's 'cannot be saved for backward'."""
    from openhmr.body import SMPL

    with torch.inference_mode():
        body = SMPL(smpl_arrays)
        kp = torch.rand(1, 19, 3) * 200
        with pytest.raises(InputError, match=r"built under torch.inference_mode\(\).*build it outside"):
            fit(body, kp, "cocoplus19")


def test_smpl_draws_starts_from_the_joint_ranges(smpl_model) -> None:
    """SMPL.random_pose: Anny's joint ranges for SMPL's T-pose (the shoulders'
    arm-up range lowered by SMPL_ARM_DROP, elbows flexing about SMPLify's axes,
    hands at rest, the root upright), reproducible from a generator; the fit
    then starts a 2D-only SMPL fit from several poses, and keeps one of lower
    energy than the single start where that one ends in a worse minimum."""
    from openhmr.body.poses import POSE_RANGES, SMPL_ARM_DROP, SMPL_BEND_AXES
    from openhmr.geometry.rotations import axis_angle_to_matrix

    pose = smpl_model.random_pose(400, torch.Generator().manual_seed(1))
    assert pose.shape == (400, 72) and pose.dtype == torch.float32
    assert torch.equal(pose, smpl_model.random_pose(400, torch.Generator().manual_seed(1)))
    joints = pose.reshape(400, 24, 3).double()
    names = list(smpl_model.joint_names)
    assert not joints[:, names.index("left_hand")].any() and not joints[:, names.index("right_hand")].any()
    (_, _, lo), (_, _, hi) = POSE_RANGES["left_shoulder"]
    z = joints[:, names.index("left_shoulder"), 2]
    assert lo - SMPL_ARM_DROP - 1e-6 <= float(z.min()) and float(z.max()) <= hi - SMPL_ARM_DROP + 1e-6
    for side in ("left", "right"):
        elbow = joints[:, names.index(f"{side}_elbow")]
        along = elbow @ torch.tensor(SMPL_BEND_AXES[f"{side}_elbow"], dtype=torch.float64)
        torch.testing.assert_close(elbow, along[:, None] * torch.tensor(SMPL_BEND_AXES[f"{side}_elbow"],
                                                                        dtype=torch.float64))
        assert float(along.min()) >= 0.0  # never bent backwards
    up = axis_angle_to_matrix(joints[:, 0])[:, 1, 1]  # the body's up axis in camera y (down): −cos tilt
    assert float(up.max()) < -0.98

    bodies = smpl_model.random_pose(6, torch.Generator().manual_seed(0))
    with torch.no_grad():
        kp3 = smpl_model(bodies, torch.zeros(6, 10)).keypoints["cocoplus19"]
    g = torch.Generator().manual_seed(0)
    cam = torch.tensor([[0.8, 0.0, 0.0]]).repeat(6, 1)
    kp = (cam[:, None, :1] * (kp3[..., :2] + cam[:, None, 1:]) + 1) * CROP / 2 + 2.0 * torch.randn(6, 19, 2, generator=g)
    kp = torch.cat([kp, torch.ones(6, 19, 1)], -1)
    cfg = FitConfig(stage1_iters=10, stage2_iters=(30,), pose_weights=(25.0,), shape_weights=(20.0,))
    one = fit(smpl_model, kp, "cocoplus19", config=replace(cfg, hypotheses=1))
    four = fit(smpl_model, kp, "cocoplus19", config=replace(cfg, hypotheses=4))
    energy_one, energy_four = (sum(r.losses.values()) for r in (one, four))
    assert (energy_four <= energy_one * 1.001).all()  # the single start is among the four
    assert (energy_four < 0.95 * energy_one).any()  # and some drawn start finds a lower minimum
