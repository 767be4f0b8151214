"""Fitting a body model to 2D (and optionally 3D) keypoints: SMPLify, adapted.

This is the recipe of SMPLify (Bogo et al., ECCV 2016), written for any
:class:`~openhmr.body.base.BodyModel` and for openhmr's two cameras:

* ``"weak"``: HMR's weak-perspective camera (s, tx, ty); 2D keypoints are in
  the pixels of a square crop of side S (224 by default), and the result's
  camera is HMR's, in that crop's normalised coordinates — the common currency
  with the network, so a fit can start from (and replace) an HMR estimate.
* ``"perspective"``: a pinhole camera of known focal length and principal
  point, 2D keypoints in image pixels; the body's translation is solved.

The method:

1. **Initialisation from the torso.** With the body at the initial pose
   (the model's default pose, root rotated by π about x so it stands upright
   in image coordinates), the camera's scale comes from the ratio of the 2D
   and 3D torso lengths (shoulder midpoint to hip midpoint) and its
   translation puts the 3D torso centre on the 2D one. For the pinhole
   camera the depth is the similar-triangles ratio f·L3D/L2D. Both a facing
   and a back-facing root orientation are tried; stage 1 keeps the better.
2. **Stage 1: camera and global orientation** on the torso keypoints only.
3. **Stage 2: pose, shape and camera** on all keypoints, in steps of
   decreasing prior weight (SMPLify's annealing), minimising

   E = Σ_k c_k·ρ(‖Π(X_k) − x_k‖/u) + λ_θ·E_θ(θ) + λ_β·‖β‖² + λ_3D·E_3D

   where ρ is the Geman–McClure function ρ(r) = σ²r²/(σ² + r²), c_k the
   keypoint confidences, u the person's pixel scale (the diagonal of the
   confident keypoints' box over 150 px, HMR's person size) so the weights do
   not depend on image resolution, and E_3D a robust, hip-centred distance to
   optional 3D keypoints (e.g. BlazePose's world landmarks). The pose prior
   E_θ is the body model's own when it has one (``pose_prior``; Anny's is a
   Gaussian over its joint ranges with a wall against knees and elbows
   bending the wrong way). Otherwise it is SMPLify's simple form,
   Σ_j w_j‖θ_j − θ̄_j‖² + (λ_a/λ_θ)·Σ_{knees, elbows} exp(−θ_j·a_j)², with
   θ̄ the default pose, w_j per-joint stiffness (spine, neck, head, collars,
   wrists, feet stiffer than limbs) and a_j the natural-flexion axis of each
   knee and elbow (the wrong-way bending guard). A body model with its own
   shape prior (``shape_prior``; Anny's is a Gaussian per phenotype with the
   spread of its ``random_shape`` draws) has it in place of λ_β‖β‖², at λ_θ
   (``shape_prior_exponent``; not in a tracked frame). The weights assume noise in
   proportion to the person (u above); keypoints whose noise is known in
   pixels (``FitConfig.noise_px``) get one more step with the 2D term
   weighted for that noise — on a large person, much more — and, throughout
   stage 2 of a fit from scratch or from ``init``, the body model's own
   prior in a flatter form that biases less where precise keypoints pin the
   pose (Anny's generalised Gaussian of exponent ``told_prior_exponent`` = 3
   instead of 2; a tracked frame keeps the Gaussian). That step scores the
   shape, too, by the body model's own prior (``shape_prior``; Anny's is a
   generalised Gaussian of exponent ``told_shape_exponent`` = 4 with the
   spread of its ``random_shape`` draws) at λ_θ, instead of λ_β‖β‖². L-BFGS stops
   short of that stiff energy's minimum; Newton steps on each person's best
   start (``openhmr.newton``, ``newton_steps``) reach it, but are off by
   default: the minimum lies no nearer the truth than where L-BFGS stops.
   For people known to be upright before a level camera, ``upright_sigma``
   adds λ_θ·(1 − cos τ)/σ², τ the body's tilt from the image's vertical.
4. **Several starts when only 2D is given.** From one view a limb's depth
   is ambiguous (it may point towards or away from the camera), so the
   energy has several minima. Without 3D keypoints and without an initial
   estimate, stage 2 runs from ``hypotheses`` poses at once — the stage-1
   pose and draws from the body model's ``random_pose`` (Anny's samples its
   prior's ranges), with stage 1's orientation — and keeps, per person, the
   one with the lowest final energy.
5. **Tracking in a video.** Given the same person's fit in the previous
   frame (``previous``), the fit starts from that pose and shape, with the
   camera from the torso again (each frame has its own crop), skips stage 1
   (``track_stage1_iters`` = 0: the previous orientation and the torso's
   closed-form camera are already close, and stage 2 refines both; running
   stage 1 took about 40 % of a tracked frame's time and gained nothing on the
   synthetic videos), runs one stage-2 step at the last annealing weights
   (``track_iters``), and adds
   a temporal term, λ_t·Σ_j ‖R_j − R_j^prev‖²_F + λ_tβ·‖β − β^prev‖². By
   default λ_t = 0: the previous pose is where the search starts, which keeps
   the body in the same basin from frame to frame at a fraction of a full
   fit's cost, but joints are not held back, since holding them lags behind
   fast movement (on brisk synthetic motion λ_t = 400 raised the 2D-only
   error from 52 to 90 mm). The shape, which does not change, is held
   (λ_tβ = 1000). Jitter is then removed by smoothing over time
   (``openhmr.smoothing``).

Optimisation is L-BFGS with one run per row (a person, a starting
orientation, a hypothesis): its own line search and curvature history
(``openhmr.lbfgs``), evaluated together as one batch. A row's loss never
increases, and a person's fit is the same alone as in any batch. A body model may provide
``forward_keypoints`` (Anny does) to skip the mesh while optimising.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import Tensor

from openhmr.body.base import BodyModel, BodyOutput
from openhmr.body.keypoints import get_set, index_map
from openhmr.errors import InputError
from openhmr.geometry.camera import crop_normalised_to_pixels, crop_pixels_to_normalised
from openhmr.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from openhmr.lbfgs import minimise_rows
from openhmr.newton import newton_rows

if TYPE_CHECKING:  # pragma: no cover
    from openhmr.data.crop import CropTransform
    from openhmr.detect import Detection

#: HMR's person size in crop pixels; the unit that the 2D weights assume.
PERSON_SIZE_PX = 150.0
#: The 2D noise σ, pixels at HMR's person size, for which the last step of
#: stage 2 weighs keypoints and priors as Bayes would: Anny's prior is a
#: negative log-density and its last weight, 4 (``range_prior_weights``), is 2σ².
REFERENCE_NOISE_PX = math.sqrt(2.0)

_TORSO = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
# Stiffer joints of the pose prior, matched by name substrings.
_STIFF = {"spine": 4.0, "neck": 4.0, "head": 4.0, "collar": 4.0, "foot": 4.0,
          "hand": 4.0, "wrist": 2.0}
# SMPLify's bending guard for SMPL (its joint names): natural flexion is a
# positive rotation about these axes.
#: Limb bones whose depth a view leaves ambiguous, as (joint, child) names:
#: the joint's rotation turns the bone that ends at the child.
JUMP_BONES: tuple[tuple[str, str], ...] = tuple(
    (f"{side}_{joint}", f"{side}_{child}") for side in ("left", "right")
    for joint, child in (("hip", "knee"), ("knee", "ankle"), ("shoulder", "elbow"),
                         ("elbow", "wrist")))
_SMPL_BEND_AXES = {"left_knee": (1.0, 0.0, 0.0), "right_knee": (1.0, 0.0, 0.0),
                   "left_elbow": (0.0, -1.0, 0.0), "right_elbow": (0.0, 1.0, 0.0)}


#: ``openhmr demo|fit --upright``'s σ of the body's tilt from the image's
#: vertical, radians (~11°): a level camera's pitch and a person's sway.
UPRIGHT_SIGMA = 0.2


@dataclass(frozen=True)
class FitConfig:
    """Weights and iteration counts (defaults tuned on synthetic Anny bodies).

    Attributes:
        stage1_iters: L-BFGS iterations for camera + global orientation.
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
        sigma: Geman–McClure scale σ in person-normalised pixels.
        weight_3d: λ_3D per squared centimetre.
        sigma_3d: Geman–McClure scale of the 3D term, centimetres.
        depth_weight: keeps the pinhole depth near its initial value in stage 1.
        conf_threshold: keypoints below this confidence are ignored.
        optimise_shape: fit the shape (else keep the initial one).
        hypotheses: stage-2 starts per person when only 2D keypoints are
            given and there is no initial estimate (1 disables).
        seed: seeds the drawn starting poses (the fit is deterministic).
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
        noise_px: σ of the 2D keypoints' noise in input pixels, for noise
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
        shape_prior_exponent: a fit from scratch that is not told the noise
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
            lowest energy is kept. 0 (the default): no jumps (see docs/fit_accuracy.md;
            ``openhmr fit --noise-px σ --jumps`` sets 120).
    """

    stage1_iters: int = 30
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
    jump_iters: int = 0


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
            pixels (NaN where unmatched; zero-confidence ones included —
            mask them with the input's confidences).
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
        return _project(points, self.cam, self.camera, self.crop_size, self.focal,
                        self.principal_point)


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------

def _project(points: Tensor, cam: Tensor, camera: str, crop_size: int,
             focal: Tensor | None, principal_point: Tensor | None) -> Tensor:
    """(B, N, 3) → (B, N, 2) pixels."""
    if camera == "weak":
        normalised = cam[:, None, :1] * (points[..., :2] + cam[:, None, 1:3])
        return crop_normalised_to_pixels(normalised, crop_size)
    p = points + cam[:, None, :]
    z = p[..., 2:3].clamp(min=1e-3)  # a point behind the camera must not flip sign
    return focal[:, None, None] * p[..., :2] / z + principal_point[:, None, :]


def gmof(squared: Tensor, sigma: float) -> Tensor:
    """Geman–McClure ρ on squared residuals: σ²·r²/(σ² + r²)."""
    s2 = sigma * sigma
    return s2 * squared / (s2 + squared)


def choose_model_set(body_model: BodyModel, keypoint_set: str, preferred: str | None = None) -> str:
    """The body model's keypoint set sharing the most names with
    ``keypoint_set``, or ``preferred`` (checked) when given."""
    names = set(get_set(keypoint_set).names)
    if preferred is not None:
        if preferred not in body_model.keypoint_sets:
            raise InputError(f"the body model has no keypoint set {preferred!r}; it has "
                             f"{', '.join(body_model.keypoint_sets)}")
        if not names & set(get_set(preferred).names):
            raise InputError(f"keypoint set {preferred!r} shares no keypoint with {keypoint_set!r}")
        return preferred
    # Most shared names; on a tie the set itself, then the smaller set.
    best = max(body_model.keypoint_sets,
               key=lambda s: (len(names & set(get_set(s).names)), s == keypoint_set,
                              -len(get_set(s))))
    if not names & set(get_set(best).names):
        raise InputError(f"the body model has no keypoint in common with set {keypoint_set!r}")
    return best


def bend_axes(body_model: BodyModel) -> Tensor:
    """(J, 3) natural-flexion axes of knees and elbows, zero rows elsewhere.

    Uses the body model's own ``bend_axes`` when it has them (Anny), else
    SMPLify's axes for SMPL-named joints.
    """
    own = getattr(body_model, "bend_axes", None)
    if own is not None:
        return own
    axes = torch.zeros(body_model.num_joints, 3)
    for j, name in enumerate(body_model.joint_names):
        if name in _SMPL_BEND_AXES:
            axes[j] = torch.tensor(_SMPL_BEND_AXES[name])
    return axes


def bend_guard(pose: Tensor, axes: Tensor) -> Tensor:
    """SMPLify's exp term: Σ over guarded joints of exp(−θ_j·a_j)², (B,)."""
    theta = pose.reshape(pose.shape[0], -1, 3)
    used = axes.abs().sum(-1) > 0
    along = (theta[:, used] * axes[used].to(theta)).sum(-1)
    return torch.exp(-along).pow(2).sum(-1)


def upright_prior(root: Tensor, sigma: float) -> Tensor:
    """(B,) negative log of a prior on the body's tilt from the image's
    vertical: (1 − cos τ)/σ² ≈ ½(τ/σ)², τ the angle between the model's up
    axis (+y of its root frame) carried by the root rotation ``root`` (B, 3)
    axis-angle and the camera's up (−y; image rows grow downwards), σ radians.
    Rotation about the vertical (which way the person faces) is free."""
    up_y = axis_angle_to_matrix(root)[:, 1, 1]  # the up axis' y in camera axes = −cos τ
    return (1.0 + up_y) / sigma ** 2


def joint_stiffness(body_model: BodyModel) -> Tensor:
    """(J,) per-joint pose-prior weights (root 0: the orientation is free)."""
    w = torch.ones(body_model.num_joints)
    for j, name in enumerate(body_model.joint_names):
        for key, value in _STIFF.items():
            if key in name:
                w[j] = value
    w[0] = 0.0
    return w


def kinematic_jumps(pose: Tensor, joints: Tensor, cam: Tensor, camera: str,
                    parents: tuple[int, ...], bones: list[tuple[int, int]]) -> Tensor:
    """The kinematic jumps of Sminchisescu & Triggs (CVPR 2003) of a batch of bodies.

    For each bone (j, c) — joint j, its child c — the child is moved along
    its viewing ray to the other point at the bone's length from X_j: the
    bone projects as before but points to the other depth (for the weak
    camera, d = X_c − X_j becomes (d_x, d_y, −d_z)). Joint j is turned by
    the smallest rotation taking d to its twin, and its children keep their
    global orientations, so the joints below c move rigidly with it.

    Args:
        pose: (B, 3·J) axis-angle, local (parent-relative) rotations.
        joints: (B, J, 3) posed joint positions of that pose, body frame, m.
        cam: (B, 3) the camera: weak (s, tx, ty) or the pinhole's translation.
        camera: ``"weak"`` or ``"perspective"``.
        parents: (J,) parent of each joint, −1 for the root, parents first.
        bones: (j, c) joint indices, c a child of j.
    Returns:
        (len(bones)·B, 3·J) poses, bone by bone (row = bone·B + body).
    """
    b = pose.shape[0]
    local = axis_angle_to_matrix(pose.reshape(b, -1, 3))  # (B, J, 3, 3)
    glob = [local[:, 0]]
    for j in range(1, local.shape[1]):
        glob.append(glob[parents[j]] @ local[:, j])
    out = []
    for j, c in bones:
        d = joints[:, c] - joints[:, j]
        if camera == "weak":  # parallel rays: the bone's depth changes sign
            d_new = d * d.new_tensor([1.0, 1.0, -1.0])
        else:
            # The child's ray meets the sphere of the bone's length about
            # the joint twice, at distances s and 2(u·p_j) − s.
            p_j, p_c = joints[:, j] + cam, joints[:, c] + cam
            s = p_c.norm(dim=-1, keepdim=True)
            u = p_c / s.clamp(min=1e-9)
            d_new = (2.0 * (u * p_j).sum(-1, keepdim=True) - s) * u - p_j
        axis = torch.cross(d, d_new, dim=-1)
        sin = axis.norm(dim=-1, keepdim=True)
        angle = torch.atan2(sin, (d * d_new).sum(-1, keepdim=True))
        turn = axis_angle_to_matrix(axis / sin.clamp(min=1e-12) * angle)  # (B, 3, 3)
        rot = local.clone()
        parent = glob[parents[j]] if parents[j] >= 0 else torch.eye(3).to(pose).expand(b, 3, 3)
        rot[:, j] = parent.transpose(1, 2) @ turn @ glob[j]
        for k, p in enumerate(parents):
            if p == j:  # children keep their global orientation
                rot[:, k] = glob[j].transpose(1, 2) @ turn.transpose(1, 2) @ glob[j] @ local[:, k]
        out.append(matrix_to_axis_angle(rot).reshape(b, -1))
    return torch.cat(out)


def _keypoints_forward(body_model: BodyModel) -> Callable[[Tensor, Tensor], BodyOutput]:
    return getattr(body_model, "forward_keypoints", body_model)


def _hip_centre(points: Tensor, names: tuple[str, ...]) -> Tensor:
    """(B, K, C) → (B, C) midpoint of the hips (or the pelvis) of a set."""
    if "left_hip" in names and "right_hip" in names:
        return 0.5 * (points[:, names.index("left_hip")] + points[:, names.index("right_hip")])
    if "pelvis" in names:
        return points[:, names.index("pelvis")]
    raise InputError("3D keypoints need both hips or a pelvis to be centred")


def _rot_aa(axis_angle: tuple[float, float, float], b: int, like: Tensor) -> Tensor:
    return torch.tensor(axis_angle, dtype=like.dtype, device=like.device).expand(b, 3).clone()


# ----------------------------------------------------------------------------
# The fit
# ----------------------------------------------------------------------------

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
        init: optional starting camera, pose and shape (skips the torso
            initialisation), e.g. an HMR estimate.
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
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _fit(body_model, keypoints2d, keypoint_set, keypoints3d, keypoints3d_set,
                    camera, crop_size, focal, principal_point, init, previous, config or FitConfig(),
                    noise_px)
    finally:
        torch.set_num_threads(threads)


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
    if camera not in ("weak", "perspective"):
        raise InputError(f"camera must be 'weak' or 'perspective', got {camera!r}")
    try:
        input_set = get_set(keypoint_set)
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from None
    # The model's floating-point precision (its first buffers may be indices).
    param = next((x for x in body_model.buffers() if x.is_floating_point()), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")

    kp2d = torch.as_tensor(np.asarray(keypoints2d) if not isinstance(keypoints2d, Tensor)
                           else keypoints2d).to(device=device, dtype=dtype)
    if kp2d.ndim == 2:
        kp2d = kp2d[None]
    if kp2d.ndim != 3 or kp2d.shape[1:] != (len(input_set), 3):
        raise InputError(
            f"keypoints2d must be (B, {len(input_set)}, 3) for set {keypoint_set!r}, "
            f"got {tuple(kp2d.shape)}")
    b = kp2d.shape[0]
    finite = torch.isfinite(kp2d).all(-1)
    kp2d = torch.where(finite[..., None], kp2d, torch.zeros_like(kp2d))
    conf_in = torch.where(kp2d[..., 2] >= cfg.conf_threshold, kp2d[..., 2],
                          torch.zeros_like(kp2d[..., 2]))

    model_set = choose_model_set(body_model, keypoint_set, cfg.model_keypoint_set)
    model_idx, input_idx = index_map(model_set, keypoint_set)
    model_idx, input_idx = list(model_idx), list(input_idx)
    target = kp2d[:, input_idx, :2]
    conf = conf_in[:, input_idx]
    matched_names = tuple(input_set.names[i] for i in input_idx)
    if (conf.sum(-1) <= 0).any():
        raise InputError("a person has no confident keypoint that the body model can match")
    seen = conf > 0
    big = torch.finfo(dtype).max
    lo = torch.where(seen[..., None], target, torch.full_like(target, big)).amin(1)
    hi = torch.where(seen[..., None], target, torch.full_like(target, -big)).amax(1)
    unit = ((hi - lo).norm(dim=-1) / PERSON_SIZE_PX).clamp(min=1e-3)  # (B,) px per unit
    noise_weight = None  # (B,) the 2D term's weight for a known pixel noise
    noise = cfg.noise_px if noise_px is None else noise_px
    if noise is not None:
        sigma = torch.as_tensor(np.asarray(noise, dtype=np.float64) if not isinstance(noise, Tensor)
                                else noise).to(device=device, dtype=dtype).reshape(-1)
        if sigma.numel() not in (1, b):
            raise InputError(f"noise_px must be one σ or one per person ({b}), got {sigma.numel()}")
        if not (torch.isfinite(sigma).all() and (sigma > 0).all()):
            raise InputError(f"noise_px must be a positive number of pixels, got {sigma.tolist()}")
        noise_weight = (REFERENCE_NOISE_PX * unit / sigma).pow(2)  # σ here is noise_px/unit
    if cfg.upright_sigma is not None and not (math.isfinite(cfg.upright_sigma)
                                              and cfg.upright_sigma > 0):
        raise InputError(f"upright_sigma must be a positive angle in radians, got {cfg.upright_sigma}")
    if cfg.told_shape_exponent is not None and not (math.isfinite(cfg.told_shape_exponent)
                                                    and cfg.told_shape_exponent > 0):
        raise InputError(f"told_shape_exponent must be a positive number, got {cfg.told_shape_exponent}")
    if cfg.shape_prior_exponent is not None and not (math.isfinite(cfg.shape_prior_exponent)
                                                     and cfg.shape_prior_exponent > 0):
        raise InputError(f"shape_prior_exponent must be a positive number, got {cfg.shape_prior_exponent}")

    # Pinhole constants.
    f_t = pp_t = None
    if camera == "perspective":
        if focal is None or principal_point is None:
            raise InputError("the perspective camera needs a focal length and a principal point")
        f_t = torch.as_tensor(focal, dtype=dtype, device=device).reshape(-1).expand(b).clone()
        pp_t = torch.as_tensor(np.asarray(principal_point) if not isinstance(
            principal_point, Tensor) else principal_point, dtype=dtype, device=device)
        pp_t = pp_t.reshape(-1, 2).expand(b, 2).clone()

    # Optional 3D term.
    t3 = None
    if keypoints3d is not None:
        set3 = keypoints3d_set or keypoint_set
        kp3 = torch.as_tensor(np.asarray(keypoints3d) if not isinstance(keypoints3d, Tensor)
                              else keypoints3d).to(device=device, dtype=dtype)
        if kp3.ndim == 2:
            kp3 = kp3[None]
        if kp3.shape != (b, len(get_set(set3)), 4):
            raise InputError(f"keypoints3d must be (B, {len(get_set(set3))}, 4) for set "
                             f"{set3!r}, got {tuple(kp3.shape)}")
        m3_set = choose_model_set(body_model, set3,
                                  cfg.model_keypoint_set if set3 == keypoint_set else None)
        m3_idx, i3_idx = (list(x) for x in index_map(m3_set, set3))
        names3 = tuple(get_set(set3).names[i] for i in i3_idx)
        pts3 = kp3[:, i3_idx, :3]
        c3 = torch.where(kp3[:, i3_idx, 3] >= cfg.conf_threshold, kp3[:, i3_idx, 3],
                         torch.zeros_like(kp3[:, i3_idx, 3]))
        c3 = torch.where(torch.isfinite(pts3).all(-1), c3, torch.zeros_like(c3))
        pts3 = torch.nan_to_num(pts3)
        t3 = (m3_set, m3_idx, names3, pts3 - _hip_centre(pts3, names3)[:, None], c3)

    forward_kp = _keypoints_forward(body_model)
    axes = bend_axes(body_model).to(device=device, dtype=dtype)
    stiff = joint_stiffness(body_model).to(device=device, dtype=dtype)
    default_pose = body_model.default_pose().to(device=device, dtype=dtype).reshape(-1, 3)
    shape_range = getattr(body_model, "shape_range", None)
    range_prior = getattr(body_model, "pose_prior", None)
    k_shape = body_model.num_betas

    def project(points: Tensor, cam: Tensor, person: Tensor) -> Tensor:
        f_r = None if f_t is None else f_t[person]
        pp_r = None if pp_t is None else pp_t[person]
        return _project(points, cam, camera, crop_size, f_r, pp_r)

    def terms(cam: Tensor, pose: Tensor, betas: Tensor, kp_mask: Tensor,
              person: Tensor, data_weight: Tensor | None = None) -> dict[str, Tensor]:
        """Loss terms of rows (B',) that belong to people ``person`` (B',);
        ``data_weight`` (B,) per person scales the 2D term."""
        out = forward_kp(pose, betas)
        pred = project(out.keypoints[model_set][:, model_idx], cam, person)
        sq = ((pred - target[person]) / unit[person][:, None, None]).pow(2).sum(-1)
        w = conf[person] * kp_mask
        res = {"data": (w * gmof(sq, cfg.sigma)).sum(-1)}
        if data_weight is not None:
            res["data"] = data_weight[person] * res["data"]
        if t3 is not None:
            m3_set, m3_idx, names3, tgt3, c3 = t3
            p3 = out.keypoints[m3_set][:, m3_idx]
            p3 = p3 - _hip_centre(p3, names3)[:, None]
            d2 = ((p3 - tgt3[person]) * 100.0).pow(2).sum(-1)  # cm²
            res["3d"] = cfg.weight_3d * (c3[person] * gmof(d2, cfg.sigma_3d)).sum(-1)
        return res

    # ---------------------------------------------------------------- init
    def pose_and_shape(start: FitInit, what: str) -> tuple[Tensor, Tensor]:
        pose0 = start.pose.to(device=device, dtype=dtype).reshape(b, -1).clone()
        betas0 = start.betas.to(device=device, dtype=dtype).reshape(b, -1).clone()
        if pose0.shape[1] != body_model.pose_size or betas0.shape[1] > k_shape:
            raise InputError(
                f"the {what} pose/shape must be (B, {body_model.pose_size}) and (B, ≤{k_shape}),"
                f" got {tuple(pose0.shape)} and {tuple(betas0.shape)}")
        return pose0, torch.cat([betas0, betas0.new_zeros(b, k_shape - betas0.shape[1])], 1)

    track = None
    if previous is not None:
        prev_pose, prev_betas = pose_and_shape(previous, "previous")
        with torch.no_grad():
            prev_rot = axis_angle_to_matrix(prev_pose.reshape(b, -1, 3))
        track = (prev_rot, prev_betas)
    if init is not None:
        cam0 = init.cam.to(device=device, dtype=dtype).reshape(b, 3).clone()
        pose0, betas0 = pose_and_shape(init, "initial")
        candidates = [(cam0, pose0)]
    elif previous is not None:
        pose0, betas0 = prev_pose.clone(), prev_betas.clone()
        with torch.no_grad():
            out = forward_kp(pose0, betas0)
        cam0 = _torso_init(out.keypoints[model_set][:, model_idx], target, conf,
                           matched_names, camera, crop_size, f_t, pp_t)
        candidates = [(cam0, pose0)]
    else:
        betas0 = torch.zeros(b, k_shape, dtype=dtype, device=device)
        candidates = []
        for root in ((math.pi, 0.0, 0.0), (0.0, 0.0, math.pi)):  # facing, back-facing
            pose0 = default_pose.reshape(1, -1).expand(b, -1).clone()
            pose0[:, :3] = _rot_aa(root, b, pose0)
            with torch.no_grad():
                out = forward_kp(pose0, betas0)
            cam0 = _torso_init(out.keypoints[model_set][:, model_idx], target, conf,
                               matched_names, camera, crop_size, f_t, pp_t)
            candidates.append((cam0, pose0))

    # Keypoints of told, small noise pin the pose down: the flatter prior then
    # biases a fit from scratch less. A tracked frame, started at the frame
    # before and given one short step, kept the Gaussian: there the flatter
    # prior was 0.8 mm worse on synthetic videos (docs/fit_accuracy.md).
    prior_shape = ({} if noise_weight is None or track is not None
                   else {"exponent": cfg.told_prior_exponent})
    # In the told step the shape, too, is scored by the body model's own prior
    # density, weighted as the pose prior is: λ_β‖β‖² is a regulariser tuned
    # for a detector's noise, not a density, and against keypoints of told
    # noise it let the shape stray beyond the spread people's shapes have
    # (docs/fit_accuracy.md).
    told_shape_prior = None
    model_shape_prior = getattr(body_model, "shape_prior", None)
    if (noise_weight is not None and track is None and model_shape_prior is not None
            and cfg.told_shape_exponent is not None):
        told_shape_prior = functools.partial(model_shape_prior, exponent=cfg.told_shape_exponent)
    # A fit from scratch of a detector's keypoints scores the shape by that
    # density too (Gaussian, exponent 2), in every step: per phenotype, in
    # units of the spread people's shapes have, where λ_β‖β‖² weighs all
    # alike (docs/fit_accuracy.md).
    untold_shape_prior = None
    if (noise_weight is None and track is None and model_shape_prior is not None
            and cfg.shape_prior_exponent is not None):
        untold_shape_prior = functools.partial(model_shape_prior, exponent=cfg.shape_prior_exponent)

    torso_mask = torch.tensor([n in _TORSO for n in matched_names], dtype=dtype, device=device)
    if (conf * torso_mask).gt(0).sum(-1).lt(2).any():
        torso_mask = torch.ones_like(torso_mask)  # too few torso points: use them all
    all_mask = torch.ones_like(torso_mask)

    # ------------------------------------------------------------- stage 1
    n_cand = len(candidates)
    cam = torch.cat([c for c, _ in candidates]).clone()
    pose = torch.cat([p for _, p in candidates]).clone()
    betas = betas0.repeat(n_cand, 1)
    depth0 = cam[:, 2].detach().clone()
    cam_p, root_p = _cam_params(cam, camera), pose[:, :3].clone()
    cam_p.requires_grad_(True)
    root_p.requires_grad_(True)
    rest_pose = pose[:, 3:].detach()

    # Rows are (candidate, person) pairs, row = candidate·B + person; the
    # optimiser evaluates the subset ``rows`` it is still searching on.
    def stage1_loss(rows: Tensor) -> Tensor:
        c = _cam_from_params(cam_p[rows], camera)
        p = torch.cat([root_p[rows], rest_pose[rows]], 1)
        t = terms(c, p, betas[rows], torso_mask, rows % b)
        loss = t["data"] + t.get("3d", 0.0)
        if camera == "perspective":
            loss = loss + cfg.depth_weight * (c[:, 2] - depth0[rows]).pow(2)
        return loss

    continuing = track is not None and init is None  # started at the previous frame's fit
    # Each row (person × starting orientation) is its own L-BFGS problem, so
    # a person's fit does not depend on the others in the batch.
    final = minimise_rows([cam_p, root_p], stage1_loss,
                          cfg.track_stage1_iters if continuing else cfg.stage1_iters)
    with torch.no_grad():
        final = torch.nan_to_num(final, nan=math.inf).reshape(n_cand, b)
        pick = final.argmin(0)  # (B,) best candidate per person
        rows = pick * b + torch.arange(b, device=device)
        cam = _cam_from_params(cam_p, camera)[rows].detach()
        pose = torch.cat([root_p, rest_pose], 1)[rows].detach()
    betas = betas0.clone()

    # ------------------------------------------------------------- stage 2
    # From 2D alone a limb's depth is ambiguous and the energy has several
    # minima: start stage 2 from several poses drawn from the model's prior
    # (the stage-1 pose first) and keep, per person, the lowest final energy.
    sampler = getattr(body_model, "random_pose", None)
    n_hyp = cfg.hypotheses if (init is None and track is None and t3 is None
                               and sampler is not None) else 1
    if n_hyp > 1:
        gen = torch.Generator().manual_seed(cfg.seed)
        # The same draws for every person, so a fit does not depend on the batch.
        drawn = sampler(n_hyp - 1, gen).to(device=device, dtype=dtype).repeat_interleave(b, 0)
        drawn[:, :3] = pose[:, :3].repeat(n_hyp - 1, 1)  # keep stage 1's orientation
        pose = torch.cat([pose, drawn])
        cam = cam.repeat(n_hyp, 1)
        betas = betas.repeat(n_hyp, 1)
    cam_p = _cam_params(cam, camera).requires_grad_(True)
    pose_p = pose.clone().requires_grad_(True)
    betas_p = betas.clone().requires_grad_(cfg.optimise_shape)
    params = [cam_p, pose_p] + ([betas_p] if cfg.optimise_shape else [])

    def stage2_terms(w_pose: float, w_shape: float, w_data: Tensor | None,
                     rows: Tensor) -> dict[str, Tensor]:
        """Terms of rows ``rows`` (hypothesis·B + person)."""
        return energy_terms(cam_p[rows], pose_p[rows], betas_p[rows], rows % b,
                            w_pose, w_shape, w_data)

    def energy_terms(cam_r: Tensor, pose_r: Tensor, betas_r: Tensor, person: Tensor,
                     w_pose: float, w_shape: float, w_data: Tensor | None) -> dict[str, Tensor]:
        """Stage 2's terms at the values given: camera parameters, pose and
        shape (B', ...) of people ``person`` (B',)."""
        t = terms(_cam_from_params(cam_r, camera), pose_r, betas_r, all_mask, person, w_data)
        if range_prior is not None:
            t["pose_prior"] = w_pose * range_prior(pose_r, **prior_shape)
        else:
            dev = (pose_r.reshape(pose_r.shape[0], -1, 3) - default_pose).pow(2).sum(-1)
            t["pose_prior"] = w_pose * (stiff * dev).sum(-1)
            t["bend"] = cfg.bend_weight * bend_guard(pose_r, axes)
        if w_data is not None and told_shape_prior is not None:
            t["shape_prior"] = w_pose * told_shape_prior(betas_r)
        elif untold_shape_prior is not None:
            t["shape_prior"] = w_pose * untold_shape_prior(betas_r)
        else:
            t["shape_prior"] = w_shape * betas_r.pow(2).sum(-1)
        if cfg.upright_sigma is not None:
            t["upright"] = w_pose * upright_prior(pose_r[:, :3], cfg.upright_sigma)
        if shape_range is not None:
            low, high = (x.to(betas_r) for x in shape_range)
            outside = torch.relu(betas_r - high) + torch.relu(low - betas_r)
            t["shape_range"] = 1e4 * outside.pow(2).sum(-1)
        if track is not None:
            prev_rot, prev_betas = track
            if cfg.temporal_weight > 0:
                rot = axis_angle_to_matrix(pose_r.reshape(pose_r.shape[0], -1, 3))
                t["temporal"] = cfg.temporal_weight * (rot - prev_rot[person]).pow(2).sum(
                    (-1, -2, -3))
            t["temporal_shape"] = cfg.temporal_shape_weight * (
                betas_r - prev_betas[person]).pow(2).sum(-1)
        return t

    pose_weights = cfg.range_prior_weights if range_prior is not None else cfg.pose_weights
    schedule = [(i, wp, ws, None) for i, wp, ws in
                zip(cfg.stage2_iters, pose_weights, cfg.shape_weights)]
    if track is not None:  # a start near the answer needs no annealing
        schedule = [(cfg.track_iters, pose_weights[-1], cfg.shape_weights[-1], noise_weight)]
    elif noise_weight is not None:
        # Anneal as usual, then settle where keypoints of the stated noise put the body.
        schedule.append((cfg.noise_stage_iters, pose_weights[-1], cfg.shape_weights[-1],
                         noise_weight))
    for iters, w_pose, w_shape, w_data in schedule:
        minimise_rows(
            params, lambda rows: sum(stage2_terms(w_pose, w_shape, w_data, rows).values()), iters)

    people = torch.arange(b, device=device)
    _, w_pose, w_shape, w_data = schedule[-1]

    def lowest_energy(n_var: int) -> tuple[Tensor, Tensor, Tensor]:
        """Each person's (camera, pose, shape) of least final energy among the
        ``n_var`` variants stacked in the parameters (variant-major rows)."""
        with torch.no_grad():
            every = torch.arange(n_var * b, device=device)
            total = torch.nan_to_num(sum(stage2_terms(w_pose, w_shape, w_data, every).values()),
                                     nan=math.inf)
            rows = total.reshape(n_var, b).argmin(0) * b + people
            return cam_p.detach()[rows], pose_p.detach()[rows], betas_p.detach()[rows]

    cam_par, pose, betas = lowest_energy(n_hyp)

    parents = getattr(body_model, "parents", None)
    names = list(body_model.joint_names)
    jump_bones = [(names.index(j), names.index(c)) for j, c in JUMP_BONES
                  if j in names and c in names]
    if (w_data is not None and track is None and t3 is None and cfg.jump_iters > 0
            and parents is not None and jump_bones):
        # From 2D alone a limb may end at the wrong one of its two depths and
        # the starts above need not have found the other: try each limb's
        # other depth from the winner, refit, keep the lowest energy.
        with torch.no_grad():
            cam_now = _cam_from_params(cam_par, camera)
            jumped = kinematic_jumps(pose, forward_kp(pose, betas).joints, cam_now, camera,
                                     tuple(parents), jump_bones)
        n_var = 1 + len(jump_bones)
        cam_p = cam_par.repeat(n_var, 1).requires_grad_(True)
        pose_p = torch.cat([pose, jumped]).requires_grad_(True)
        betas_p = betas.repeat(n_var, 1).requires_grad_(cfg.optimise_shape)
        params = [cam_p, pose_p] + ([betas_p] if cfg.optimise_shape else [])
        minimise_rows(
            params, lambda rows: sum(stage2_terms(w_pose, w_shape, w_data, rows).values()),
            cfg.jump_iters)
        cam_par, pose, betas = lowest_energy(n_var)

    if w_data is not None and track is None and cfg.newton_steps > 0:
        # The told noise's heavy 2D term makes the energy stiff, and L-BFGS
        # stops short of its minimum: finish each person's winner with Newton.
        sizes = [cam_par.shape[1], pose.shape[1]] + ([k_shape] if cfg.optimise_shape else [])

        def energy(x: Tensor, person: Tensor) -> Tensor:
            parts = x.split(sizes, 1)
            shape = parts[2] if cfg.optimise_shape else betas[person]
            return sum(energy_terms(parts[0], parts[1], shape, person, w_pose, w_shape,
                                    w_data).values())

        x = torch.cat([cam_par, pose] + ([betas] if cfg.optimise_shape else []), 1)
        x, _ = newton_rows(x, energy, cfg.newton_steps)
        parts = x.split(sizes, 1)
        cam_par, pose = parts[0], parts[1]
        betas = parts[2] if cfg.optimise_shape else betas

    with torch.no_grad():
        losses = {k: v.detach() for k, v in energy_terms(cam_par, pose, betas, people, w_pose,
                                                         w_shape, w_data).items()}
        cam = _cam_from_params(cam_par, camera)
        output = body_model(pose, betas)
        pred = project(output.keypoints[model_set][:, model_idx], cam, people)
        k_in = len(input_set)
        kp_fit = torch.full((b, k_in, 2), float("nan"), dtype=dtype, device=device)
        kp_fit[:, input_idx] = pred
        residuals = (kp_fit - kp2d[..., :2]).norm(dim=-1)
    return FitResult(
        camera=camera, cam=cam, pose=pose, betas=betas, output=output,
        model_keypoint_set=model_set, keypoints2d=kp_fit, residuals_px=residuals,
        losses=losses, crop_size=crop_size, focal=f_t, principal_point=pp_t,
    )


def _cam_params(cam: Tensor, camera: str) -> Tensor:
    """Unconstrained parameters of a camera: log-scale for the weak one."""
    if camera == "weak":
        return torch.cat([cam[:, :1].clamp(min=1e-4).log(), cam[:, 1:]], 1).detach().clone()
    return cam.detach().clone()


def _cam_from_params(p: Tensor, camera: str) -> Tensor:
    if camera == "weak":
        # The bound only keeps a wandering line search from overflowing.
        return torch.cat([p[:, :1].clamp(-20.0, 20.0).exp(), p[:, 1:]], 1)
    return p


def _torso_init(points3d: Tensor, target: Tensor, conf: Tensor, names: tuple[str, ...],
                camera: str, crop_size: int, focal: Tensor | None,
                principal_point: Tensor | None) -> Tensor:
    """Camera that maps the body's torso onto the 2D torso (SMPLify's init).

    Scale from torso lengths (shoulder midpoint to hip midpoint); when a
    person lacks a visible shoulder or hip, from the spread of all visible
    keypoints instead. Translation puts the 3D centre on the 2D centre.

    Args:
        points3d: (B, K, 3) model keypoints (camera-aligned body frame).
        target: (B, K, 2) pixels; conf: (B, K).
    Returns:
        (B, 3) weak camera (s, tx, ty) or pinhole translation (tx, ty, tz).
    """
    b = points3d.shape[0]
    seen = conf > 0

    def mid(pair: tuple[str, str], pts: Tensor) -> tuple[Tensor, Tensor]:
        idx = [names.index(n) for n in pair if n in names]
        if not idx:
            return pts.new_zeros(b, pts.shape[-1]), torch.zeros(b, dtype=torch.bool,
                                                                device=pts.device)
        w = seen[:, idx].to(pts.dtype)
        ok = w.sum(-1) > 0
        m = (pts[:, idx] * w[..., None]).sum(1) / w.sum(-1).clamp(min=1)[:, None]
        return m, ok

    sh2, ok_s = mid(("left_shoulder", "right_shoulder"), target)
    hp2, ok_h = mid(("left_hip", "right_hip"), target)
    sh3, _ = mid(("left_shoulder", "right_shoulder"), points3d)
    hp3, _ = mid(("left_hip", "right_hip"), points3d)
    # The 3D midpoints must use the same side(s) as the 2D ones.
    w = seen.to(points3d.dtype)
    torso_ok = ok_s & ok_h
    len2 = (sh2 - hp2).norm(dim=-1)
    len3 = (sh3 - hp3)[:, :2].norm(dim=-1)
    c2 = 0.5 * (sh2 + hp2)
    c3 = 0.5 * (sh3 + hp3)
    # Fallback: spread of all visible keypoints.
    n = w.sum(-1).clamp(min=1)
    mean2 = (target * w[..., None]).sum(1) / n[:, None]
    mean3 = (points3d * w[..., None]).sum(1) / n[:, None]
    spread2 = (((target - mean2[:, None]) ** 2).sum(-1) * w).sum(-1).div(n).sqrt()
    spread3 = (((points3d - mean3[:, None])[..., :2] ** 2).sum(-1) * w).sum(-1).div(n).sqrt()
    use_torso = torso_ok & (len2 > 1e-6)
    ratio = torch.where(use_torso, len2 / len3.clamp(min=1e-6),
                        spread2 / spread3.clamp(min=1e-6))  # pixels per metre
    ratio = ratio.clamp(min=1e-3)
    centre2 = torch.where(use_torso[:, None], c2, mean2)
    centre3 = torch.where(use_torso[:, None], c3, mean3)
    if camera == "weak":
        s = ratio * 2.0 / crop_size
        t = crop_pixels_to_normalised(centre2, crop_size) / s[:, None] - centre3[:, :2]
        return torch.cat([s[:, None], t], 1)
    tz = focal / ratio
    txy = (centre2 - principal_point) * (tz / focal)[:, None] - centre3[:, :2]
    return torch.cat([txy, (tz - centre3[:, 2])[:, None]], 1)


# ----------------------------------------------------------------------------
# The demo's entry point
# ----------------------------------------------------------------------------

@dataclass
class DetectionFit:
    """A fit to one BlazePose detection, in HMR's common currency.

    Attributes:
        crop: (S, S, 3) uint8 RGB crop of the person (HMR's 150-px scaling).
        transform: the crop ↔ image map (``openhmr.data.crop.CropTransform``).
        result: the fit with the weak camera in that crop's normalised
            coordinates; ``result.keypoints2d`` are crop pixels
            (``transform.crop_to_image`` maps them to the image).
        keypoints2d_crop: (33, 3) the detection's keypoints in crop pixels.
    """

    crop: np.ndarray
    transform: "CropTransform"
    result: FitResult
    keypoints2d_crop: np.ndarray


def fit_detection(
    image: np.ndarray,
    detection: "Detection",
    body_model: BodyModel,
    crop_size: int = 224,
    *,
    transform: "CropTransform | None" = None,
    init: FitInit | None = None,
    use_3d: bool = True,
    config: FitConfig | None = None,
) -> DetectionFit:
    """Fit ``body_model`` to a BlazePose detection in HMR's crop frame.

    The crop is HMR's (``openhmr.data.crop``): the box of the keypoints with
    visibility > 0.5 scaled to a 150-px diagonal, centred on it — unless
    ``transform`` is given (e.g. the crop HMR just ran on, for ``hmr+fit``,
    with ``init`` its estimate). The 2D keypoints are fitted with the weak
    camera in crop pixels; with ``use_3d`` the world landmarks join in.

    Args:
        image: (H, W, 3) uint8 RGB, the image the detection came from.
        detection: :func:`openhmr.detect.detect_person`'s result.
        body_model: e.g. ``Anny()``.
    Returns:
        :class:`DetectionFit`.
    """
    from openhmr.data.crop import crop_pixels, crop_transform, scale_for_keypoints

    kp = np.asarray(detection.keypoints2d, dtype=np.float64)
    if transform is None:
        scale, centre = scale_for_keypoints(kp, conf_threshold=0.5)
        transform = crop_transform(image.shape[:2], scale, centre, crop_size)
    crop = crop_pixels(image, transform)
    kp_crop = np.concatenate([transform.image_to_crop(kp[:, :2]), kp[:, 2:3]], 1)
    kp3 = np.asarray(detection.keypoints3d, dtype=np.float64)[None] if use_3d else None
    result = fit(
        body_model, kp_crop[None], detection.keypoint_set,
        keypoints3d=kp3, keypoints3d_set=detection.keypoint_set,
        camera="weak", crop_size=transform.crop_size, init=init, config=config,
    )
    return DetectionFit(crop=crop, transform=transform, result=result,
                        keypoints2d_crop=kp_crop.astype(np.float32))


__all__ = [
    "DetectionFit", "FitConfig", "FitInit", "FitResult", "bend_axes", "bend_guard",
    "choose_model_set", "fit", "fit_detection", "gmof", "joint_stiffness",
]
