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
   bending the wrong way). Otherwise it is a simple form of SMPLify's prior
   (whose mixture of Gaussians, learned from mocap, comes with SMPLify's
   licence-gated code),
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
   prior's ranges, SMPL's the same ranges for its T-pose), with stage 1's
   orientation, except ``mirror_starts`` of them (3 of 8), which take its
   mirror in depth (``torso_mirror``): the torso's shoulders and hips alone
   do not tell a body turned by +ψ from one turned by −ψ, stage 1 may end
   at either, and no start of stage 2 crosses from one to the other. It keeps,
   per person, the one with the lowest final energy. Told the noise, from 2D
   alone and not tracking, the winner's kinematic jumps (``kinematic_jumps``:
   each thigh, shin, upper arm and forearm turned to its other depth) are
   refitted beside it (``jump_iters``, 120) and the lowest energy kept.
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
increases, and no person's steps depend on another's: a person's fit is the
same alone as in any batch up to round-off grown along the optimiser's path. A body model may provide
``forward_keypoints`` (Anny does) to skip the mesh while optimising.

The modules: ``config`` (settings, starts, results), ``targets`` (the
keypoints matched to the body model's), ``camera``, ``priors``, ``energy``
(the terms above, per row), ``jumps``, ``solve`` (the schedule, :func:`fit`)
and ``detection`` (:func:`fit_detection`, the demo's entry point).
"""

from openhmr.fit.camera import project
from openhmr.fit.config import PERSON_SIZE_PX, REFERENCE_NOISE_PX, FitConfig, FitInit, FitResult
from openhmr.fit.detection import DetectionFit, fit_detection
from openhmr.fit.jumps import JUMP_BONES, kinematic_jumps, torso_mirror
from openhmr.fit.priors import (
    UPRIGHT_SIGMA,
    bend_axes,
    bend_guard,
    gmof,
    joint_stiffness,
    upright_prior,
)
from openhmr.fit.solve import fit
from openhmr.fit.targets import choose_model_set

__all__ = [
    "JUMP_BONES", "PERSON_SIZE_PX", "REFERENCE_NOISE_PX", "UPRIGHT_SIGMA", "DetectionFit",
    "FitConfig", "FitInit", "FitResult", "bend_axes", "bend_guard", "choose_model_set", "fit",
    "fit_detection", "gmof", "joint_stiffness", "kinematic_jumps", "project", "torso_mirror",
    "upright_prior",
]
