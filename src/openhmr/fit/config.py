"""What a fit is given and what it returns: settings, starting points, results.

The weights' units follow the method in :mod:`openhmr.fit`: the 2D term is in
pixels at HMR's person size (:data:`PERSON_SIZE_PX`), so the same weights
serve any image resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from openhmr.body.base import BodyOutput
from openhmr.fit.camera import project

#: HMR's person size in crop pixels; the unit that the 2D weights assume.
PERSON_SIZE_PX = 150.0
#: The 2D noise σ, pixels at HMR's person size, for which the last step of
#: stage 2 weighs keypoints and priors as Bayes would: Anny's prior is a
#: negative log-density and its last weight, 4 (``range_prior_weights``), is 2σ².
REFERENCE_NOISE_PX = math.sqrt(2.0)


@dataclass(frozen=True)
class FitConfig:
    """Weights and iteration counts (defaults tuned on synthetic Anny bodies).

    The L-BFGS "iterations" below are evaluations per person
    (:func:`openhmr.lbfgs.minimise_rows`' budget): the first evaluates the
    start and line-search retries count, so n takes at most n − 1 steps (1:
    none). Every value is checked when a fit starts (one InputError naming it).

    Attributes:
        stage1_iters: L-BFGS iterations for camera + global orientation.
        stage1_keypoints: which of a person's keypoints stage 1 fits:
            ``"torso"`` (shoulders and hips, SMPLify's; all of them for a
            person who shows fewer than two of those) or ``"all"``.
        stage2_iters: L-BFGS iterations per annealing step of stage 2.
        pose_weights: λ_θ of each annealing step of stage 2 (SMPLify's
            prior, for body models without ``pose_prior``).
        range_prior_weights: λ_θ of each step for a body model's own
            ``pose_prior``. Anny's is a negative log-density and the data
            term is 2σ²× the negative log-likelihood of keypoint noise σ (in
            pixels at HMR's person size), so 2σ² is the Bayesian weight:
            8 for σ = 2 px; the last step's 4 trusts the keypoints a little more.
        shape_weights: λ_β of each step (same length as ``pose_weights``).
        bend_weight: λ_a, the wrong-way bending guard.
        sigma: Geman–McClure scale σ in person-normalised pixels (at most 1e6).
        weight_3d: λ_3D per squared centimetre.
        sigma_3d: Geman–McClure scale of the 3D term, centimetres (at most 1e6).
        depth_weight: keeps the pinhole depth near its initial value in stage 1.
        conf_threshold: keypoints below this confidence are ignored.
        optimise_shape: fit the shape (else keep the initial one).
        hypotheses: stage-2 starts per person when only 2D keypoints are
            given and there is no initial estimate (1 disables); the extra
            starts are drawn by the body model's ``random_pose`` (Anny and
            SMPL have one), so a model without one starts once.
        mirror_starts: of those starts, how many (at most half, rounded
            down) take stage 1's orientation mirrored in depth
            (:func:`torso_mirror`: a torso turned by +ψ and one turned by −ψ
            project alike, stage 1 ends at either, and stage 2 cannot turn
            the body through the wider torso between them); stage 1's pose
            is the first of them. 0: all keep stage 1's orientation. On
            the 1,200 synthetic photos (told), 3 of 8 lowered the mean
            PA-MPJPE from 37.7 to 36.3 mm (docs/fit_accuracy.md#torso-mirror).
        seed: seeds the drawn starting poses (the fit is deterministic); below 2**64.
        track_iters: stage-2 L-BFGS iterations when tracking (``previous``).
        track_stage1_iters: stage-1 iterations when tracking from the
            previous frame's fit (0: skipped; with ``init`` too, stage 1
            runs ``stage1_iters`` from it as usual).
        temporal_weight: λ_t, on the squared Frobenius distance of each joint's
            rotation matrix to the previous frame's (summed over joints); 0:
            the previous pose is only the start (see the module docstring).
        temporal_shape_weight: λ_tβ, on ‖β − β^prev‖².
        model_keypoint_set: the body model's keypoint set the input is
            matched to, by name (None: the one sharing the most names,
            :func:`choose_model_set`; e.g. "body25" fits BlazePose without
            its hand points).
        noise_px: σ of the 2D keypoints' noise in input pixels (1e-6 to 1e6), for noise
            that does not grow with the person (synthetic keypoints, a
            measured error on large images). None: noise in proportion to the
            person, as a detector's (it sees the person at one size), which
            the weights above are set for. Given, stage 2 ends with one more
            step at the last prior weights, the 2D term weighted by
            (REFERENCE_NOISE_PX / σ)², σ = ``noise_px`` at HMR's person size:
            against the priors (and the 3D term) the keypoints then weigh what
            Bayes gives noise of that σ. A tracked frame's one step takes the
            weight instead.
        noise_stage_iters: L-BFGS iterations of that step (a heavier 2D term
            makes the energy stiffer and slower to settle).
        newton_steps: after that step, at most this many Newton steps
            (``openhmr.newton``) finish each person's fit at its minimum, which
            L-BFGS on the stiff energy stops short of. Only with ``noise_px``
            and not when tracking. 0 (the default): none — on six sets of
            synthetic photos 12 steps moved the median PA-MPJPE by −1.0 to
            +1.9 mm, +0.03 mm on average, for ~0.15 s more per person.
        told_prior_exponent: with ``noise_px``, the body model's
            ``pose_prior`` is called with this ``exponent`` in every step of
            stage 2 (Anny: a generalised Gaussian of the same variance, flatter
            over the joint ranges; 2 is the usual Gaussian). Keypoints of small
            told noise pin most of the pose, and the Gaussian's pull towards
            the ranges' centres then costs more than it saves; under the
            larger noise a detector's keypoints carry, it saves more, and a
            tracked frame (``previous``) keeps the Gaussian too (see docs/fit_accuracy.md).
        told_shape_exponent: with ``noise_px``, the told step scores the
            shape by the body model's own ``shape_prior`` with this
            ``exponent`` (Anny: a generalised Gaussian of the variance of
            ``random_shape``'s draws), weighted as the pose prior is (λ_θ), in
            place of λ_β‖β‖². None, a tracked frame, or a body model without
            ``shape_prior`` (SMPL): λ_β‖β‖² as in the other steps.
        shape_prior_exponent: a fit not tracking and not told the noise (from
            scratch or from ``init``)
            (a detector's keypoints) scores the shape in every step of stage 2
            by the body model's own ``shape_prior`` with this ``exponent``
            (Anny: a Gaussian of the variance of ``random_shape``'s draws per
            phenotype), weighted as the pose prior is (λ_θ), in place of
            λ_β‖β‖²: on synthetic bodies, lower PA-MPJPE medians and means on
            most of six sets of 100 (docs/fit_accuracy.md). None, a tracked frame, a told
            fit (whose steps before the told one keep λ_β‖β‖²), or a body
            model without ``shape_prior`` (SMPL): λ_β‖β‖².
        upright_sigma: σ, radians, of a prior on the body's tilt τ from the
            image's vertical (:func:`upright_prior`), weighted in stage 2 as
            the pose prior is (λ_θ of each step): for people known to stand
            or walk upright before a level camera. From 2D alone, a body
            leaning towards the camera and one leaning away project alike,
            and the joint priors alone do not tell them apart. None (the
            default): the orientation is free, as in SMPLify.
        jump_iters: with ``noise_px``, from 2D alone and not when tracking:
            after the told step, each person's best fit and its kinematic
            jumps (:func:`kinematic_jumps`: one limb bone at a time — thigh,
            shin, upper arm, forearm — turned to the other depth that
            projects alike) are refitted this many L-BFGS iterations, and the
            lowest energy is kept. On the 1,200 synthetic photos, 120 (the
            default) lowered the median PA-MPJPE from 30.4 to 29.5–29.8 mm and
            the mean from 36.1–36.3 to 34.8–35.2 (two runs) for ~1.5× the time; fewer iterations kept
            less of that (docs/fit_accuracy.md#cheaper-jumps). 0: no jumps
            (``openhmr fit|demo --no-jumps``).
    """

    stage1_iters: int = 30
    stage1_keypoints: str = "torso"
    stage2_iters: tuple[int, ...] = (30, 30, 40)
    pose_weights: tuple[float, ...] = (400.0, 100.0, 25.0)
    range_prior_weights: tuple[float, ...] = (40.0, 12.0, 4.0)
    shape_weights: tuple[float, ...] = (200.0, 50.0, 20.0)
    bend_weight: float = 20.0
    sigma: float = 40.0
    weight_3d: float = 0.3
    sigma_3d: float = 50.0
    depth_weight: float = 100.0
    conf_threshold: float = 0.2
    optimise_shape: bool = True
    hypotheses: int = 8
    mirror_starts: int = 3
    seed: int = 0
    track_iters: int = 40
    track_stage1_iters: int = 0
    temporal_weight: float = 0.0
    temporal_shape_weight: float = 1000.0
    model_keypoint_set: str | None = None
    noise_px: float | None = None
    noise_stage_iters: int = 120
    newton_steps: int = 0
    told_prior_exponent: float = 3.0
    told_shape_exponent: float | None = 4.0
    shape_prior_exponent: float | None = 2.0
    upright_sigma: float | None = None
    jump_iters: int = 120


@dataclass
class FitInit:
    """A starting point, e.g. HMR's estimate (``hmr+fit``).

    Attributes:
        cam: (B, 3) weak camera (s, tx, ty) or pinhole translation (tx, ty, tz) m.
        pose: (B, 3·J) axis-angle.
        betas: (B, k) shape.
    """

    cam: Tensor
    pose: Tensor
    betas: Tensor

    def __post_init__(self) -> None:
        # numpy arrays (an estimate read back from an npz) are taken as tensors
        self.cam, self.pose, self.betas = (torch.as_tensor(x) for x in (self.cam, self.pose, self.betas))


@dataclass
class FitResult:
    """The fitted bodies.

    Attributes:
        camera: ``"weak"`` or ``"perspective"``.
        cam: (B, 3) weak: (s, tx, ty) in normalised crop coordinates;
            perspective: translation (tx, ty, tz) in metres, camera frame
            (x right, y down, z forward), added to the body's points.
        pose: (B, 3·J) axis-angle, joint 0 the global orientation.
        betas: (B, k) shape.
        output: the body model's output (with the mesh) at the fit.
        model_keypoint_set: the body model's set matched to the 2D input.
        keypoints2d: (B, K, 2) fitted keypoints projected to pixels (crop
            pixels for weak, image pixels for perspective), in the input's
            order; NaN where the body model has no such keypoint.
        residuals_px: (B, K) distance between those and the input keypoints,
            pixels (NaN where unmatched or where the input was not finite;
            zero-confidence ones included — mask them with the input's
            confidences).
        losses: final loss terms, each (B,).
        crop_size, focal, principal_point: the camera's constants.
    """

    camera: str
    cam: Tensor
    pose: Tensor
    betas: Tensor
    output: BodyOutput
    model_keypoint_set: str
    keypoints2d: Tensor
    residuals_px: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    crop_size: int = 224
    focal: Tensor | None = None
    principal_point: Tensor | None = None

    def project(self, points: Tensor) -> Tensor:
        """Project body-frame points (B, N, 3) to pixels with the fitted camera."""
        return project(points, self.cam, self.camera, self.crop_size, self.focal,
                       self.principal_point)
