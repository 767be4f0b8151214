"""The fit's schedule: starts, stage 1, stage 2, and the optional finishes.

:func:`fit` follows the method in :mod:`openhmr.fit`: starting cameras from
the torso (or from ``init`` / the previous frame), stage 1 on the camera and
global orientation, stage 2 on everything in annealing steps from one or
several starting poses, then, optionally, kinematic jumps and Newton steps.
Each row (a person with one candidate) is its own L-BFGS problem
(``openhmr.lbfgs``), so a person's fit does not depend on the others in the
batch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from openhmr.body.base import BodyModel
from openhmr.errors import InputError
from openhmr.fit.camera import CAMERAS, MIN_DEPTH_M, cam_from_params, cam_params, read_pinhole, torso_init
from openhmr.fit.config import FitConfig, FitInit, FitResult
from openhmr.fit.energy import Energy
from openhmr.fit.jumps import JUMP_BONES, kinematic_jumps, torso_mirror
from openhmr.fit.targets import read_targets, read_targets3d, told_noise_weight
from openhmr.geometry.rotations import axis_angle_to_matrix
from openhmr.lbfgs import minimise_rows
from openhmr.newton import newton_rows


def fit(
    body_model: BodyModel,
    keypoints2d: Tensor | np.ndarray,
    keypoint_set: str,
    *,
    keypoints3d: Tensor | np.ndarray | None = None,
    keypoints3d_set: str | None = None,
    camera: str = "weak",
    crop_size: int = 224,
    focal: float | Tensor | None = None,
    principal_point: Tensor | np.ndarray | tuple[float, float] | None = None,
    init: FitInit | None = None,
    previous: FitInit | None = None,
    config: FitConfig | None = None,
    noise_px: float | Tensor | np.ndarray | None = None,
    num_threads: int | None = 1,
) -> FitResult:
    """Fit ``body_model`` to 2D keypoints (and optional 3D keypoints).

    Args:
        body_model: any :class:`BodyModel` (e.g. ``Anny()`` or ``SMPL(...)``).
        keypoints2d: (B, K, 3) x, y pixels and confidence, in the order of the
            named ``keypoint_set`` (any set of ``openhmr.body.keypoints``).
            Pixels of the S×S crop for ``camera="weak"``, of the image for
            ``"perspective"``. Non-finite points count as missing.
        keypoints3d: optional (B, K3, 4) x, y, z metres and confidence,
            camera-aligned (x right, y down, z away), compared after centring
            both on the hips.
        keypoints3d_set: set of ``keypoints3d`` (default: ``keypoint_set``).
        camera: ``"weak"`` or ``"perspective"``.
        crop_size: S, the crop side for the weak camera.
        focal: pinhole focal length in pixels, scalar or (B,) (perspective).
        principal_point: (2,) or (B, 2) pixels (perspective; default: none —
            required).
        init: optional starting camera, pose and shape, e.g. an HMR
            estimate; its pose also starts with the torso's camera, and
            the start whose stage 1 ends lower is kept per person. A weak scale s ≤ 0
            starts at a small positive one; a perspective translation that
            puts a keypoint of the body at or behind the camera (another
            convention's, −z forward) is replaced by the torso's camera.
        previous: the same people's fit in the previous video frame
            (cam, pose, betas; the camera is not used, each frame having its
            own crop): track them — start from that pose and shape unless
            ``init`` is given, run the short schedule and hold rotations and
            shape to it (method, step 5).
        config: weights and iterations.
        noise_px: σ of each person's 2D keypoint noise in input pixels,
            scalar or (B,), for people whose keypoints were placed at
            different scales (e.g. crops of one image); given, it replaces
            ``config.noise_px`` (see :class:`FitConfig`).
        num_threads: torch intra-op threads while fitting, restored after
            (None: leave as is). The fit runs thousands of tiny operations,
            for which extra threads only add synchronisation: on a busy
            2-core machine one thread was 10× faster than two.
    Returns:
        :class:`FitResult`.
    Raises:
        InputError: malformed keypoints, unknown set or camera, no usable keypoint.
    """
    if not isinstance(body_model, BodyModel):
        raise TypeError(f"body_model must be a body model such as Anny() or SMPL('smpl.npz'), "
                        f"got {body_model!r:.60}")
    if (not isinstance(crop_size, numbers.Real) or isinstance(crop_size, bool) or not math.isfinite(crop_size)
            or not crop_size > 0):
        raise InputError(f"crop_size must be a positive number of pixels, got {crop_size!r}")
    if any(t.is_inference() for t in body_model.buffers()):  # no gradient can flow through them
        raise InputError("the body model was built under torch.inference_mode(), so nothing can be "
                         "fitted with it: build it outside (fit itself may be called inside)")
    if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral)
                                    or num_threads < 1):
        raise InputError(f"num_threads must be a whole number ≥ 1 or None, got {num_threads!r}")
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        # The fit differentiates its energy, even when called under no_grad or
        # inference_mode (a pipeline that predicts, then fits).
        with torch.inference_mode(False), torch.enable_grad():
            return _fit(body_model, keypoints2d, keypoint_set, keypoints3d, keypoints3d_set,
                        camera, crop_size, focal, principal_point, init, previous, config or FitConfig(),
                        noise_px)
    finally:
        torch.set_num_threads(threads)


# How far, in crop sides, a weak camera's keypoint may lie from the crop's
# centre: a limb may leave the crop, but points this far are image pixels.
MAX_CROP_REACH = 2.0

#: The largest robust scale σ (``sigma``, ``sigma_3d``): σ² times a squared
#: residual stays finite in float32 for residuals up to ~1e13.
MAX_SIGMA = 1e6


def _check_in_crop(points: Tensor, conf: Tensor, crop_size: int) -> None:
    """InputError where the weak camera's confident keypoints (B, M, 2) lie
    far outside the S×S crop (S = ``crop_size``): image pixels given where
    crop pixels belong, which the fit would meet with an absurd camera."""
    offset = ((points - crop_size / 2).abs().amax(-1) * (conf > 0)).amax()
    if float(offset) > MAX_CROP_REACH * crop_size:
        raise InputError(
            f"keypoints2d for the weak camera are pixels of the {crop_size:g}-px crop, but some lie "
            f"{float(offset):.0f} px from its centre: image pixels? Crop first (openhmr.fit.fit_detection "
            "does) or fit with camera='perspective', focal and principal_point")


def _check_config(cfg: FitConfig, own_pose_prior: bool = False) -> None:
    """Raise InputError for settings no fit can use: each one named, before
    any of them is used (a NaN weight or a zero σ would otherwise give a
    fit that quietly ignores its keypoints). ``own_pose_prior``: the body
    model has its own pose prior, so ``range_prior_weights`` are its pose
    weights and ``pose_weights`` are not used (and the other way round)."""

    def count(name: str, least: int = 0) -> None:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            raise InputError(f"{name} must be a whole number ≥ {least}, got {value!r} ({type(value).__name__})")

    def real(value: object) -> bool:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)

    def number(name: str, positive: bool = False, optional: bool = False) -> None:
        value = getattr(cfg, name)
        if optional and value is None:
            return
        ok = real(value)
        if not ok or value < 0 or (positive and value == 0):
            raise InputError(f"{name} must be a finite number {'> 0' if positive else '≥ 0'}, got {value!r}")

    steps = cfg.stage2_iters
    if isinstance(steps, np.ndarray):  # as read from an npz or a json through numpy
        steps = tuple(steps.tolist()) if steps.ndim == 1 else steps
    if (isinstance(steps, (int, float, np.ndarray)) or not steps
            or not all(isinstance(i, numbers.Integral) and not isinstance(i, bool) and i >= 0 for i in steps)):
        raise InputError(f"stage2_iters must be a tuple of iteration counts, one per annealing step, got {steps!r}")
    for name in ("pose_weights", "range_prior_weights", "shape_weights"):
        weights = getattr(cfg, name)
        if isinstance(weights, np.ndarray):
            weights = tuple(weights.tolist())
        if not isinstance(weights, (tuple, list)):  # None, a number, text: one line naming it
            raise InputError(f"{name} must be a tuple of weights, one per step of stage2_iters, got {weights!r}")
        unused = name == ("pose_weights" if own_pose_prior else "range_prior_weights")
        if unused and len(weights) < len(steps):
            # Any length will do for the tuple this body model does not use (SMPLify's
            # four steps on SMPL need no fourth Anny weight), but not a non-finite weight.
            weights = tuple(weights) + (0.0,) * (len(steps) - len(weights))
        if len(weights) < len(steps):
            # zip() would silently drop the steps beyond the weights.
            raise InputError(f"{name} must give a weight for each of the {len(steps)} steps of "
                             f"stage2_iters, got {weights!r}")
        if not all(real(w) and w >= 0 for w in weights):
            raise InputError(f"{name} must be finite weights ≥ 0, got {weights!r}")
    for name in ("stage1_iters", "track_iters", "track_stage1_iters", "noise_stage_iters", "newton_steps",
                 "jump_iters", "mirror_starts", "seed"):
        count(name)
    count("hypotheses", 1)
    for name in ("bend_weight", "weight_3d", "temporal_weight", "temporal_shape_weight"):
        number(name)
    for name in ("sigma", "sigma_3d", "depth_weight"):
        number(name, positive=True)
    for name in ("sigma", "sigma_3d"):
        # σ²·r² must stay finite in float32 (3.4e38), or the robust term is inf/inf = NaN
        if getattr(cfg, name) > MAX_SIGMA:
            raise InputError(f"{name} must be at most {MAX_SIGMA:g}, got {getattr(cfg, name)!r}")
    if cfg.seed >= 2 ** 64:
        raise InputError(f"seed must be below 2**64, got {cfg.seed!r}")
    number("noise_px", positive=True, optional=True)
    if not (real(cfg.conf_threshold) and 0 <= cfg.conf_threshold < 1):
        raise InputError(f"conf_threshold must lie in [0, 1), got {cfg.conf_threshold!r}")
    if not isinstance(cfg.optimise_shape, bool):
        raise InputError(f"optimise_shape must be True or False, got {cfg.optimise_shape!r}")
    if cfg.stage1_keypoints not in ("torso", "all"):
        raise InputError(f"stage1_keypoints must be 'torso' or 'all', got {cfg.stage1_keypoints!r}")
    if cfg.upright_sigma is not None and not (real(cfg.upright_sigma) and cfg.upright_sigma > 0):
        raise InputError(f"upright_sigma must be a positive angle in radians, got {cfg.upright_sigma}")
    for name in ("told_prior_exponent", "told_shape_exponent", "shape_prior_exponent"):
        value = getattr(cfg, name)
        # |x|^p below p = 1 has an infinite slope at 0, where every fit starts;
        # only the shape's exponents have a meaning for None (λ_β‖β‖²)
        if (value is not None or name == "told_prior_exponent") and not (real(value) and value >= 1):
            raise InputError(f"{name} must be a number ≥ 1, got {value}")


def _check_start(start: FitInit, what: str, batch: int) -> None:
    """InputError for an ``init`` or ``previous`` a fit cannot start from:
    NaN would make that person's whole fit NaN, silently. (A weak scale
    s ≤ 0, which HMR's regressor may give, is started at a small positive
    one instead.)"""
    for name in ("cam", "pose", "betas"):
        value = getattr(start, name)
        if value.numel() and not bool(torch.isfinite(value).all()):
            raise InputError(f"the {what} {name} holds NaN or infinite values")
    if start.cam.numel() != 3 * batch or start.cam.shape[-1] != 3:
        raise InputError(f"the {what} cam must be (B, 3) for the {batch} people, got {tuple(start.cam.shape)}")
    for name in ("pose", "betas"):
        # one person's values must not be cut into several people's
        value = getattr(start, name)
        rows = value.shape[0] if value.ndim >= 2 else 1
        if value.ndim == 0 or rows != batch:
            raise InputError(f"the {what} {name} must have one row per person ({batch}),"
                             f" got {tuple(value.shape)}")


def _pose_and_shape(start: FitInit, what: str, body_model: BodyModel, batch: int,
                    dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """A start's pose (B, 3·J) and shape (B, k), shorter shapes padded with zeros."""
    k_shape = body_model.num_betas
    # detached: a start may carry the caller's graph (HMR's output) or be a Parameter
    pose0 = start.pose.detach().to(device=device, dtype=dtype).reshape(batch, -1).clone()
    betas0 = start.betas.detach().to(device=device, dtype=dtype).reshape(batch, -1).clone()
    if pose0.shape[1] != body_model.pose_size or betas0.shape[1] > k_shape:
        raise InputError(
            f"the {what} pose/shape must be (B, {body_model.pose_size}) and (B, ≤{k_shape}),"
            f" got {tuple(pose0.shape)} and {tuple(betas0.shape)}")
    return pose0, torch.cat([betas0, betas0.new_zeros(batch, k_shape - betas0.shape[1])], 1)


def _rot_aa(axis_angle: tuple[float, float, float], b: int, like: Tensor) -> Tensor:
    return torch.tensor(axis_angle, dtype=like.dtype, device=like.device).expand(b, 3).clone()


def _starts(body_model: BodyModel, energy: Energy, init: FitInit | None,
            previous_start: tuple[Tensor, Tensor] | None,
            ) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
    """Stage 1's candidates, (camera (B, 3), pose (B, 3·J)) each, and the shape (B, k).

    From ``init``, its pose and shape, with its camera and with the camera
    from the torso; tracking, the previous
    frame's pose and shape with the camera from the torso; from scratch, the
    default pose facing the camera and facing away, at the mean shape, each
    with the camera from the torso.
    """
    t = energy.targets
    b, dtype, device = t.batch, t.points.dtype, t.points.device

    def torso_camera(pose0: Tensor, betas0: Tensor) -> Tensor:
        with torch.no_grad():
            out = energy.forward_keypoints(pose0, betas0)
        return torso_init(out.keypoints[t.model_set][:, t.model_idx], t.points, t.conf, t.names,
                          energy.camera, energy.crop_size, energy.focal, energy.principal_point)

    if init is not None:
        cam0 = init.cam.detach().to(device=device, dtype=dtype).reshape(b, 3).clone()
        pose0, betas0 = _pose_and_shape(init, "initial", body_model, b, dtype, device)
        if energy.camera == "perspective":
            # A point behind the camera projects with its depth clamped, which
            # has no gradient towards the front: the fit would stay there.
            with torch.no_grad():
                depth = energy.forward_keypoints(pose0, betas0).keypoints[t.model_set][..., 2] + cam0[:, 2:]
            behind = (depth <= MIN_DEPTH_M).any(-1)
            if bool(behind.any()):
                cam0 = torch.where(behind[:, None], torso_camera(pose0, betas0), cam0)
        # The given pose also with the camera from the torso, the better kept per
        # person: from a poor network estimate (a wrong pose, a scale near or below 0)
        # the given camera alone drifted to a body shrunk to a point, all residuals
        # in the robust term's flat tail (40 px off, where this start gives 1.4).
        return [(cam0, pose0), (torso_camera(pose0, betas0), pose0)], betas0
    if previous_start is not None:
        pose0, betas0 = previous_start[0].clone(), previous_start[1].clone()
        return [(torso_camera(pose0, betas0), pose0)], betas0
    betas0 = torch.zeros(b, body_model.num_betas, dtype=dtype, device=device)
    default_pose = energy.default_pose
    candidates = []
    for root in ((math.pi, 0.0, 0.0), (0.0, 0.0, math.pi)):  # facing, back-facing
        pose0 = default_pose.reshape(1, -1).expand(b, -1).clone()
        pose0[:, :3] = _rot_aa(root, b, pose0)
        candidates.append((torso_camera(pose0, betas0), pose0))
    return candidates, betas0


def _stage1(energy: Energy, candidates: list[tuple[Tensor, Tensor]], betas0: Tensor,
            iters: int) -> tuple[Tensor, Tensor]:
    """Camera and global orientation on the torso: each person's best candidate's
    camera (B, 3) and pose (B, 3·J)."""
    t, camera, cfg = energy.targets, energy.camera, energy.cfg
    b = t.batch
    torso_mask = t.torso_mask() if cfg.stage1_keypoints == "torso" else torch.ones_like(t.conf)
    n_cand = len(candidates)
    cam = torch.cat([c for c, _ in candidates]).clone()
    pose = torch.cat([p for _, p in candidates]).clone()
    betas = betas0.repeat(n_cand, 1)
    depth0 = cam[:, 2].detach().clone()
    cam_p, root_p = cam_params(cam, camera), pose[:, :3].clone()
    cam_p.requires_grad_(True)
    root_p.requires_grad_(True)
    rest_pose = pose[:, 3:].detach()

    # Rows are (candidate, person) pairs, row = candidate·B + person; the
    # optimiser evaluates the subset ``rows`` it is still searching on.
    def loss(rows: Tensor) -> Tensor:
        c = cam_from_params(cam_p[rows], camera)
        p = torch.cat([root_p[rows], rest_pose[rows]], 1)
        terms = energy.data_terms(c, p, betas[rows], torso_mask[rows % b], rows % b)
        value = terms["data"] + terms.get("3d", 0.0)
        if camera == "perspective":
            value = value + cfg.depth_weight * (c[:, 2] - depth0[rows]).pow(2)
        return value

    final = minimise_rows([cam_p, root_p], loss, iters)
    with torch.no_grad():
        final = torch.nan_to_num(final, nan=math.inf).reshape(n_cand, b)
        pick = final.argmin(0)  # (B,) best candidate per person
        rows = pick * b + torch.arange(b, device=cam.device)
        return (cam_from_params(cam_p, camera)[rows].detach(),
                torch.cat([root_p, rest_pose], 1)[rows].detach())


@dataclass
class _Step:
    """One step of stage 2: L-BFGS iterations and the weights (see ``Energy.terms``)."""

    iters: int
    w_pose: float
    w_shape: float
    w_data: Tensor | None


def _schedule(energy: Energy, cfg: FitConfig, noise_weight: Tensor | None) -> list[_Step]:
    """Stage 2's steps: SMPLify's annealing, then the told step for told noise;
    a tracked frame, started near its answer, gets one step at the last weights."""
    pose_weights = cfg.range_prior_weights if energy.pose_prior is not None else cfg.pose_weights
    last = len(cfg.stage2_iters) - 1  # the last annealing step's weights (a tuple may hold more)
    if energy.track is not None:
        return [_Step(cfg.track_iters, pose_weights[last], cfg.shape_weights[last], noise_weight)]
    steps = [_Step(i, wp, ws, None)
             for i, wp, ws in zip(cfg.stage2_iters, pose_weights, cfg.shape_weights)]
    if noise_weight is not None:
        # Anneal as usual, then settle where keypoints of the stated noise put the body.
        steps.append(_Step(cfg.noise_stage_iters, pose_weights[last], cfg.shape_weights[last],
                           noise_weight))
    return steps


def _people_of_rows(energy: Energy, rows: int, people: Tensor | None) -> Tensor:
    """Each row's person: ``people``, or variant-major rows (row = variant·B + person)."""
    if people is not None:
        return people
    return torch.arange(rows, device=energy.targets.keypoints.device) % energy.targets.batch


def _minimise(energy: Energy, cam_par: Tensor, pose: Tensor, betas: Tensor,
              steps: list[_Step], people: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Run ``steps`` from rows of (camera parameters, pose, shape), each row a
    person's (``people``, default variant-major: row = variant·B + person),
    and return the rows' final values."""
    optimise_shape = energy.cfg.optimise_shape
    person_of = _people_of_rows(energy, cam_par.shape[0], people)
    cam_p = cam_par.clone().requires_grad_(True)
    pose_p = pose.clone().requires_grad_(True)
    betas_p = betas.clone().requires_grad_(optimise_shape)
    params = [cam_p, pose_p] + ([betas_p] if optimise_shape else [])
    for step in steps:
        def loss(rows: Tensor, step: _Step = step) -> Tensor:
            return energy.total(cam_p[rows], pose_p[rows], betas_p[rows], person_of[rows], step.w_pose,
                                step.w_shape, step.w_data)

        minimise_rows(params, loss, step.iters)
    return cam_p.detach(), pose_p.detach(), betas_p.detach()


def _lowest_energy(energy: Energy, cam_par: Tensor, pose: Tensor, betas: Tensor,
                   step: _Step, people: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Each person's (camera parameters, pose, shape) of least energy at ``step``'s
    weights among their rows (``people`` as :func:`_minimise`'s); of equal
    energies, the first row's."""
    b, n = energy.targets.batch, cam_par.shape[0]
    person_of = _people_of_rows(energy, n, people)
    with torch.no_grad():
        total = torch.nan_to_num(energy.total(cam_par, pose, betas, person_of, step.w_pose,
                                              step.w_shape, step.w_data), nan=math.inf)
        least = torch.full((b,), math.inf, dtype=total.dtype, device=total.device).scatter_reduce(
            0, person_of, total, "amin")
        index = torch.arange(n, device=total.device)
        candidates = torch.where(total == least[person_of], index, torch.full_like(index, n))
        rows = torch.full((b,), n, dtype=index.dtype, device=index.device).scatter_reduce(
            0, person_of, candidates, "amin")
        return cam_par[rows], pose[rows], betas[rows]


def _stage2(body_model: BodyModel, energy: Energy, cam: Tensor, pose: Tensor, betas: Tensor,
            steps: list[_Step], hypotheses: int, several: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Pose, shape and camera on all keypoints, from ``hypotheses`` starting
    poses for the people ``several`` (B,) bool (default: everyone; one start
    for the others): stage 1's and draws from the body model's prior with its
    orientation, ``mirror_starts`` of them (stage 1's pose first) with its
    :func:`torso_mirror` instead. Each person's (camera parameters, pose,
    shape) of least final energy."""
    b, cfg = energy.targets.batch, energy.cfg
    people = None
    if hypotheses > 1:
        gen = torch.Generator().manual_seed(int(cfg.seed))  # torch takes no numpy integer
        # Several starts only for a model with a pose prior to draw from (see fit()).
        random_pose: Callable[[int, torch.Generator], Tensor] = getattr(body_model, "random_pose")
        # The same draws for every person, so a fit does not depend on the batch.
        drawn = random_pose(hypotheses - 1, gen).to(pose).repeat_interleave(b, 0)
        drawn[:, :3] = pose[:, :3].repeat(hypotheses - 1, 1)  # keep stage 1's orientation
        # A torso turned by +ψ and one turned by −ψ project alike, stage 1 may
        # end at either, and stage 2 cannot turn through the wider torso
        # between them: the last starts (stage 1's pose first) take the other.
        mirrored = min(cfg.mirror_starts, hypotheses // 2)
        if mirrored:
            first = (hypotheses - 1 - mirrored) * b
            drawn[first:first + b] = pose
            drawn[first:, :3] = torso_mirror(drawn[first:, :3])
        pose = torch.cat([pose, drawn])
        cam = cam.repeat(hypotheses, 1)
        betas = betas.repeat(hypotheses, 1)
        if several is not None and not bool(several.all()):
            person_of = torch.arange(b * hypotheses, device=pose.device) % b
            keep = (torch.arange(b * hypotheses, device=pose.device) < b) | several.to(pose.device)[person_of]
            pose, cam, betas, people = pose[keep], cam[keep], betas[keep], person_of[keep]
    ends = _minimise(energy, cam_params(cam, energy.camera), pose, betas, steps, people)
    return _lowest_energy(energy, *ends, steps[-1], people)


def _jumps(body_model: BodyModel, energy: Energy, cam_par: Tensor, pose: Tensor,
           betas: Tensor, step: _Step, jumpers: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """From 2D alone a limb may end at the wrong one of its two depths and the
    starts need not have found the other: try each limb's other depth from the
    winner (:func:`kinematic_jumps`), refit, keep the lowest energy. Only for
    the people ``jumpers`` (B,) bool (default: everyone); the others keep
    their fits as they are."""
    names = list(body_model.joint_names)
    parents: tuple[int, ...] = tuple(getattr(body_model, "parents"))  # jumps only with it (see fit())
    bones = [(names.index(j), names.index(c)) for j, c in JUMP_BONES
             if j in names and c in names]
    with torch.no_grad():
        cam_now = cam_from_params(cam_par, energy.camera)
        jumped = kinematic_jumps(pose, energy.forward_keypoints(pose, betas).joints, cam_now,
                                 energy.camera, parents, bones)
    n_var = 1 + len(bones)
    b = pose.shape[0]
    people = torch.arange(b * n_var, device=pose.device) % b  # variant-major, as kinematic_jumps'
    keep = torch.ones_like(people, dtype=torch.bool)
    if jumpers is not None:
        keep = (torch.arange(b * n_var, device=pose.device) < b) | jumpers.to(pose.device)[people]
    ends = _minimise(energy, cam_par.repeat(n_var, 1)[keep], torch.cat([pose, jumped])[keep],
                     betas.repeat(n_var, 1)[keep],
                     [_Step(energy.cfg.jump_iters, step.w_pose, step.w_shape, step.w_data)], people[keep])
    if jumpers is not None:
        # The others' one row each, their fit, is kept as it was (refitted it would
        # differ from the same person's fit in a batch without anyone to jump).
        frozen = ~jumpers.to(pose.device)[people[keep]]
        for end, start in zip(ends, (cam_par, pose, betas)):
            end[frozen] = start[people[keep][frozen]]
    return _lowest_energy(energy, *ends, step, people[keep])


def _newton(energy: Energy, cam_par: Tensor, pose: Tensor, betas: Tensor,
            step: _Step) -> tuple[Tensor, Tensor, Tensor]:
    """The told noise's heavy 2D term makes the energy stiff, and L-BFGS stops
    short of its minimum: finish each person's winner with Newton steps."""
    optimise_shape = energy.cfg.optimise_shape
    sizes = [cam_par.shape[1], pose.shape[1]] + ([betas.shape[1]] if optimise_shape else [])

    def value(x: Tensor, person: Tensor) -> Tensor:
        parts = x.split(sizes, 1)
        shape = parts[2] if optimise_shape else betas[person]
        return energy.total(parts[0], parts[1], shape, person, step.w_pose, step.w_shape,
                            step.w_data)

    x = torch.cat([cam_par, pose] + ([betas] if optimise_shape else []), 1)
    x, _ = newton_rows(x, value, energy.cfg.newton_steps)
    parts = x.split(sizes, 1)
    return parts[0], parts[1], parts[2] if optimise_shape else betas


def _fit(
    body_model: BodyModel,
    keypoints2d: Tensor | np.ndarray,
    keypoint_set: str,
    keypoints3d: Tensor | np.ndarray | None,
    keypoints3d_set: str | None,
    camera: str,
    crop_size: int,
    focal: float | Tensor | None,
    principal_point: Tensor | np.ndarray | tuple[float, float] | None,
    init: FitInit | None,
    previous: FitInit | None,
    cfg: FitConfig,
    noise_px: float | Tensor | np.ndarray | None = None,
) -> FitResult:
    """The body of :func:`fit` (same arguments)."""
    if camera not in CAMERAS:
        raise InputError(f"camera must be 'weak' or 'perspective', got {camera!r}")
    # The model's floating-point precision (its first buffers may be indices).
    param = next((x for x in body_model.buffers() if x.is_floating_point()), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")

    _check_config(cfg, own_pose_prior=getattr(body_model, "pose_prior", None) is not None)
    targets = read_targets(body_model, keypoints2d, keypoint_set, cfg, dtype, device)
    if camera == "weak":
        _check_in_crop(targets.points, targets.conf, crop_size)
    b = targets.batch
    for start, what in ((init, "initial"), (previous, "previous")):
        if start is not None:
            _check_start(start, what, b)
    noise = cfg.noise_px if noise_px is None else noise_px
    noise_weight = None if noise is None else told_noise_weight(noise, targets)  # (B,)
    focal_t = principal_t = None
    if camera == "perspective":
        focal_t, principal_t = read_pinhole(focal, principal_point, b, dtype, device)
    targets3d = None
    if keypoints3d is not None:
        targets3d = read_targets3d(body_model, keypoints3d, keypoints3d_set or keypoint_set,
                                   keypoint_set, cfg, b, dtype, device)

    track = previous_start = None
    if previous is not None:
        previous_start = _pose_and_shape(previous, "previous", body_model, b, dtype, device)
        with torch.no_grad():
            prev_rot = axis_angle_to_matrix(previous_start[0].reshape(b, -1, 3))
        track = (prev_rot, previous_start[1])
    energy = Energy(body_model, cfg, camera, crop_size, focal_t, principal_t, targets,
                    targets3d, told=noise_weight is not None, track=track)

    # Stage 1: camera and global orientation, from each start.
    candidates, betas0 = _starts(body_model, energy, init, previous_start)
    continuing = track is not None and init is None  # started at the previous frame's fit
    cam, pose = _stage1(energy, candidates, betas0,
                        cfg.track_stage1_iters if continuing else cfg.stage1_iters)

    # Stage 2: from 2D alone a limb's depth is ambiguous and the energy has
    # several minima: start from several poses drawn from the model's prior
    # (the stage-1 pose first) and keep, per person, the lowest final energy.
    # Per person: one whose 3D points all count for nothing (no 3D hips) is fitted from 2D alone.
    from_scratch = init is None and track is None
    without_3d = None if targets3d is None else ~(targets3d.conf > 0).any(dim=1)
    hypotheses = (cfg.hypotheses if from_scratch and (without_3d is None or bool(without_3d.any()))
                  and getattr(body_model, "random_pose", None) is not None else 1)
    steps = _schedule(energy, cfg, noise_weight)
    cam_par, pose, betas = _stage2(body_model, energy, cam, pose, betas0.clone(), steps,
                                   hypotheses, without_3d)

    last = steps[-1]
    told_alone = last.w_data is not None and track is None
    # The jumps choose between depths that only 2D leaves open: for the people
    # fitted from 2D alone (all, or those of a batch with 3D whose 3D counts for nothing).
    if (told_alone and cfg.jump_iters > 0 and (without_3d is None or bool(without_3d.any()))
            and getattr(body_model, "parents", None) is not None
            and any(j in body_model.joint_names and c in body_model.joint_names
                    for j, c in JUMP_BONES)):
        cam_par, pose, betas = _jumps(body_model, energy, cam_par, pose, betas, last, without_3d)
    if told_alone and cfg.newton_steps > 0:
        cam_par, pose, betas = _newton(energy, cam_par, pose, betas, last)
    return _result(body_model, energy, cam_par, pose, betas, last)


def _result(body_model: BodyModel, energy: Energy, cam_par: Tensor, pose: Tensor,
            betas: Tensor, step: _Step) -> FitResult:
    """The fitted bodies with their mesh, final terms and projected keypoints."""
    t = energy.targets
    people = torch.arange(t.batch, device=pose.device)
    with torch.no_grad():
        losses = {k: v.detach() for k, v in energy.terms(
            cam_par, pose, betas, people, step.w_pose, step.w_shape, step.w_data).items()}
        cam = cam_from_params(cam_par, energy.camera)
        output = body_model(pose, betas)
        pred = energy.project(output.keypoints[t.model_set][:, t.model_idx], cam, people)
        kp_fit = torch.full(t.keypoints[..., :2].shape, float("nan"), dtype=pred.dtype,
                            device=pred.device)
        kp_fit[:, t.input_idx] = pred
        # A keypoint given as NaN or infinite has no residual (its zeroed place is no target).
        residuals = torch.where(t.finite, (kp_fit - t.keypoints[..., :2]).norm(dim=-1),
                                torch.full_like(kp_fit[..., 0], float("nan")))
    return FitResult(
        camera=energy.camera, cam=cam, pose=pose, betas=betas, output=output,
        model_keypoint_set=t.model_set, keypoints2d=kp_fit, residuals_px=residuals,
        losses=losses, crop_size=energy.crop_size, focal=energy.focal,
        principal_point=energy.principal_point,
    )
