"""Smoothing a video's body estimates over time.

An estimate made frame by frame (HMR's network, or a fit) has an error of its
own in every frame, so the body trembles even when the person stands still.
Two smoothers:

* **Whole clip** (:func:`smooth_clip`, the demo's default for video files):
  the Whittaker–Henderson smoother, a penalised least-squares fit
  ``min_z ‖z − y‖² + λ‖Δ²z‖²`` over every frame of a run at once, with λ
  chosen per quantity by generalised cross-validation (Craven and Wahba
  1979) as in Garcia's ``smoothn`` (Comput. Stat. Data Anal. 2010), solved
  exactly with a banded Cholesky factorisation, around each quantity's least-squares
  straight line, so that a steady motion keeps its pace to the clip's
  ends. It sees the frames after each one as well
  as those before, so it has no lag, and GCV sets the strength from the data
  itself: strong on a trembling estimate, weak where the estimate is already
  steady or the motion is fast.
* **Causal** (:class:`BodySmoother`): the One-Euro filter (Casiez, Roussel
  and Vogel, CHI 2012), an exponential low-pass filter whose cutoff frequency
  rises with the signal's speed. A frame's result depends only on the frames
  up to it, so it runs as a stream goes; the price is lag when the body moves
  fast.

What both filter:

* the joint rotations as 3×3 matrices (axis-angle jumps where the angle
  passes π), projected back onto rotations; the speed that sets a joint's
  cutoff is that of its whole matrix, so the nine entries move together;
* the shape parameters — but a person's shape does not change, so within a
  run they are averaged rather than filtered: the run's mean over the whole
  clip, the mean so far causally. (Tracked fits hold the shape near the
  previous frame's, so its error drifts slowly; a filter takes such a drift
  for movement, and on a still person it made most of the jitter left.)
  Each frame's camera was estimated with that frame's own shape, so, given
  the body's joints (``joints_of``), the camera's scale and offset are then
  solved again (:func:`refit_cameras`) to keep the projection the smoothed
  camera gives the body with the shape filtered as the rest is (a taller
  average body is drawn no larger): the filtered shape pairs with the
  filtered camera, each frame's raw shape does not.
* the camera in image space. A weak camera (s, tx, ty) is relative to its
  frame's crop, which moves when the crop follows the person; what is
  filtered instead is where the body's origin lands in the image (pixels)
  and how many image pixels a metre spans (as its logarithm), apart, and
  the result is mapped back into each frame's crop. (The position was once
  filtered in metres, pixels over that frame's own scale: the scale's
  tremble then entered the position in proportion to its distance from the
  image's corner, and the two, smoothed at different strengths and
  multiplied back, left a body near the middle of a large picture
  trembling more than before.) The causal filter's settings are in metres,
  so it takes the position in metres at the run's first scale, a constant.

A frame that does not directly follow the last one with a body (a frame
without a body in between) starts a new run: runs are smoothed separately.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from openhmr.data.crop import CropTransform
from openhmr.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle


def _alpha(cutoff_hz: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of an exponential filter with this cutoff: dt / (dt + τ), τ = 1/(2π·f_c)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz))
    return dt / (dt + tau)


@dataclass
class OneEuroFilter:
    """The One-Euro filter over arrays of a fixed shape.

    Args:
        min_cutoff: cutoff frequency when the signal is still, Hz.
        beta: how fast the cutoff rises with speed, Hz per (unit/s).
        d_cutoff: cutoff of the low-pass on the speed itself, Hz.
        speed_axes: trailing axes whose entries share one speed (its norm),
            e.g. 2 for (J, 3, 3) rotation matrices; 0: each entry its own.
    """

    min_cutoff: float
    beta: float
    d_cutoff: float = 1.0
    speed_axes: int = 0
    _x: np.ndarray | None = field(default=None, repr=False)
    _dx: np.ndarray | None = field(default=None, repr=False)

    def reset(self) -> None:
        self._x = self._dx = None

    def __call__(self, x: np.ndarray, dt: float) -> np.ndarray:
        """The filtered value of ``x``, observed ``dt`` seconds after the last one."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            return x.copy()
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * ((x - self._x) / dt - self._dx)
        speed = np.abs(self._dx)
        if self.speed_axes:
            axes = tuple(range(-self.speed_axes, 0))
            speed = np.sqrt((self._dx ** 2).sum(axis=axes, keepdims=True))
        self._x = self._x + _alpha(self.min_cutoff + self.beta * speed, dt) * (x - self._x)
        return self._x.copy()


#: A body's joints for poses (T, 3·J) axis-angle and shapes (T, k): (T, N, 3)
#: metres in the body's frame, whose x and y a weak camera projects.
JointsOf = Callable[[np.ndarray, np.ndarray], np.ndarray]


def refit_cameras(cams: np.ndarray, poses: np.ndarray, shapes: np.ndarray, new_shapes: np.ndarray,
                  joints_of: JointsOf) -> np.ndarray:
    """Weak cameras (T, 3) for bodies whose shape was replaced.

    Per frame, the scale s′ and offset t′ that carry the joints X′ of (pose,
    new shape) in least squares onto where the camera (s, t) projects the
    joints X of (pose, old shape): min ‖s′(X′ + t′) − s(X + t)‖² over x and y
    (a scale and a translation in closed form).

    Args:
        cams: (T, 3) weak cameras (s, tx, ty).
        poses: (T, 3·J); shapes, new_shapes: (T, k).
    """
    cams = np.asarray(cams, dtype=np.float64)
    old = joints_of(poses, shapes)[..., :2]
    new = joints_of(poses, new_shapes)[..., :2]
    target = cams[:, None, :1] * (old + cams[:, None, 1:])
    target_mean, new_mean = target.mean(1, keepdims=True), new.mean(1, keepdims=True)
    scale = (((target - target_mean) * (new - new_mean)).sum((1, 2))
             / np.maximum(((new - new_mean) ** 2).sum((1, 2)), 1e-12))
    offset = target_mean[:, 0] / scale[:, None] - new_mean[:, 0]
    return np.concatenate([scale[:, None], offset], axis=1)


def nearest_rotations(matrices: np.ndarray) -> np.ndarray:
    """(..., 3, 3) → the nearest rotation matrices (Frobenius norm), by SVD."""
    u, _, vt = np.linalg.svd(matrices)
    u[..., :, 2] *= np.sign(np.linalg.det(u @ vt))[..., None]  # a reflection is not a rotation
    return u @ vt


def camera_to_image(cam: np.ndarray, transform: CropTransform) -> np.ndarray:
    """Weak camera (s, tx, ty) in a crop → (log pixels per metre, x, y): the
    image scale and the image position of the body's origin, pixels. The
    crop's x scale stands for both axes (they differ by pixel rounding,
    ~1/width). A scale s ≤ 0 has no image scale: ValueError."""
    half = transform.crop_size / 2.0
    s, t = float(cam[0]), np.asarray(cam[1:3], dtype=np.float64)
    if not s > 0:
        raise ValueError(f"a camera of scale {s:g} has no image scale")
    per_metre = half * s / transform.scale_x
    origin = transform.crop_to_image(half * (1.0 + s * t))
    return np.concatenate([[math.log(per_metre)], origin])


def camera_from_image(image_cam: np.ndarray, transform: CropTransform) -> np.ndarray:
    """Inverse of :func:`camera_to_image` for ``transform``'s crop."""
    half = transform.crop_size / 2.0
    per_metre = math.exp(float(image_cam[0]))
    s = per_metre * transform.scale_x / half
    t = (transform.image_to_crop(np.asarray(image_cam[1:3])) / half - 1.0) / s
    return np.concatenate([[s], t])


@dataclass
class SmoothingConfig:
    """One-Euro settings (min_cutoff Hz, beta) per quantity, for a video's frame rate.

    Chosen on synthetic videos of bodies moving at constant speed (an earlier
    version of ``benchmarks/fit_video.py``; on its brisker spline motion they
    lag, see README, "Videos"): rotations in matrix entries per second,
    camera position in metres per second, camera scale in log units per
    second; the shape in its own units per second (its filtered value is
    only the reference for the camera's refit: the shape returned is
    averaged, see the module's text).
    """

    rotation: tuple[float, float] = (2.0, 3.0)
    shape: tuple[float, float] = (1.0, 0.0)
    position: tuple[float, float] = (1.0, 1.0)
    scale: tuple[float, float] = (1.0, 1.0)


class BodySmoother:
    """One person's estimates through a video: frame by frame, causal.

    Args:
        fps: the video's frame rate (the filter's cutoffs are in Hz).
        config: the filter settings.
        joints_of: the body's joints, to keep each frame's projection when
            its shape is replaced by the mean so far (:func:`refit_cameras`);
            None leaves the camera as filtered.
    """

    def __init__(self, fps: float, config: SmoothingConfig | None = None,
                 joints_of: JointsOf | None = None) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.dt = 1.0 / fps
        c = config or SmoothingConfig()
        self.rotations = OneEuroFilter(*c.rotation, speed_axes=2)
        self.shape = OneEuroFilter(*c.shape, speed_axes=1)  # the reference for the camera's refit
        self.shape_sum: np.ndarray | None = None  # the run's shapes so far, summed
        self.shape_count = 0
        self.joints_of = joints_of
        self.position = OneEuroFilter(*c.position, speed_axes=1)  # metres at the run's first scale
        self.scale = OneEuroFilter(*c.scale)
        self.per_metre: float | None = None  # pixels per metre at the run's first frame
        self.last_frame: int | None = None

    def reset(self) -> None:
        for f in (self.rotations, self.shape, self.position, self.scale):
            f.reset()
        self.shape_sum, self.shape_count = None, 0
        self.per_metre = None
        self.last_frame = None

    def __call__(self, frame: int, cam: np.ndarray, pose: np.ndarray, betas: np.ndarray,
                 transform: CropTransform) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Smoothed (cam (3,), pose (3·J,) axis-angle, betas (k,)) for ``frame``,
        with ``cam`` relative to that frame's crop ``transform``."""
        if self.last_frame is None or frame != self.last_frame + 1:
            self.reset()
        self.last_frame = frame
        matrices = axis_angle_to_matrix(torch.as_tensor(pose, dtype=torch.float64).reshape(-1, 3))
        smoothed = nearest_rotations(self.rotations(matrices.numpy(), self.dt))
        pose_out = matrix_to_axis_angle(torch.from_numpy(smoothed)).reshape(-1).numpy()
        image_cam = camera_to_image(cam, transform)
        if self.per_metre is None:
            self.per_metre = math.exp(float(image_cam[0]))
        # the position in metres for the filter's settings, at one scale for the run: this
        # frame's own would carry its scale's tremble into the position
        position = self.position(image_cam[1:] / self.per_metre, self.dt) * self.per_metre
        image_cam = np.concatenate([self.scale(image_cam[:1], self.dt), position])
        betas = np.asarray(betas, dtype=np.float64)
        self.shape_sum = betas.copy() if self.shape_sum is None else self.shape_sum + betas
        self.shape_count += 1
        shape = self.shape_sum / self.shape_count
        cam_out = camera_from_image(image_cam, transform)
        filtered = self.shape(betas, self.dt)
        if self.joints_of is not None:
            cam_out = refit_cameras(cam_out[None], pose_out[None], filtered[None], shape[None], self.joints_of)[0]
        return cam_out, pose_out, shape


# ------------------------------------------------------------------ whole clip
GCV_LAMBDAS = np.logspace(-2.0, 8.0, 41)  # λ searched, per quantity (4 per decade)


def whittaker_gcv(samples: np.ndarray, lambdas: np.ndarray = GCV_LAMBDAS) -> tuple[np.ndarray, float]:
    """Whittaker–Henderson smoothing of uniformly spaced samples, λ by GCV.

    Minimises ``‖z − y‖² + λ‖Δ²z‖²`` (Δ² the second difference along time):
    ``z = (I + λDᵀD)⁻¹y``, solved exactly by a banded Cholesky factorisation. The
    penalty is zero on straight lines, so a steady trend is kept to both
    ends of the clip. (A cosine-transform form, which takes the penalty under
    a mirror extension at the ends, had been used before: with one λ for all
    joints, set by the still, trembling ones, it slowed a joint turning
    steadily at the first and last frames — a root turning at 6° a frame came
    out 7.7° off there, against 0.9° unsmoothed; 1.4° now, 0.3° in the middle.) The λ of
    ``lambdas`` with the least generalised cross-validation score
    ``n·RSS / (n − tr)²`` is kept, tr the smoother's trace
    (:func:`whittaker_trace`); all columns share it.

    Args:
        samples: (n, ...) values at n uniformly spaced times.
        lambdas: candidate λ (dimensionless: frames⁴ per unit of the penalty).
    Returns:
        (smoothed (n, ...), chosen λ); fewer than 4 samples come back as they
        are, with λ = 0.
    """
    y = np.asarray(samples, dtype=np.float64)
    n = y.shape[0]
    if n < 4:
        return y.copy(), 0.0
    flat = y.reshape(n, -1)
    # The smoother keeps lines: taking each column's least-squares line out
    # first keeps them to round-off at any λ.
    ramp = _unit_ramp(n)
    line = flat.mean(axis=0) + ramp[:, None] * (ramp @ flat)[None, :]
    rest = flat - line
    lams = np.asarray(lambdas, dtype=np.float64)
    # λ in groups, all solved at once: ~64 MB of intermediate values at most.
    group = max(1, int(8e6 // max(1, n * flat.shape[1])))
    best: tuple[float, float, np.ndarray] | None = None
    for first in range(0, len(lams), group):
        part = lams[first:first + group]
        factor = _banded_cholesky(n, part)
        smoothed = _banded_solve(factor, rest)  # (n, L, d)
        traces = _banded_inverse_trace(factor)
        for k, lam in enumerate(part):
            rss = float(((rest - smoothed[:, k]) ** 2).sum())
            # λ = 0 reproduces the data (trace n): GCV has no value there
            score = n * rss / (n - traces[k]) ** 2 if n - traces[k] > 1e-9 else math.inf
            if best is None or score < best[0]:
                best = (score, float(lam), smoothed[:, k])
    assert best is not None
    return (line + best[2]).reshape(y.shape), best[1]


def whittaker_trace(n: int, lam: float) -> float:
    """The trace of :func:`whittaker_gcv`'s smoother ``(I + λDᵀD)⁻¹`` for n
    samples (the degrees of freedom GCV charges)."""
    return float(_banded_inverse_trace(_banded_cholesky(n, np.array([float(lam)])))[0])


def _banded_cholesky(n: int, lams: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Cholesky factor L of ``I + λDᵀD`` (n ≥ 3) for each λ of ``lams``
    (L,): its diagonal, first and second sub-diagonal, each (n, L) (row i
    holds L[i, i], L[i, i−1], L[i, i−2])."""
    # I + λDᵀD: diagonal 1 + λ(1, 5, 6, …, 6, 5, 1), bands λ(−2, −4, …, −4, −2) and λ.
    diag = np.full(n, 6.0)
    diag[[1, -2]] = 5.0
    diag[[0, -1]] = 1.0
    sub = np.full(n, -4.0)
    sub[[1, -1]] = -2.0
    l0, l1, l2 = (np.zeros((n, len(lams))) for _ in range(3))
    for i in range(n):
        if i >= 2:
            l2[i] = lams / l0[i - 2]
        if i >= 1:
            l1[i] = (lams * sub[i] - (l2[i] * l1[i - 1] if i >= 2 else 0.0)) / l0[i - 1]
        l0[i] = np.sqrt(1.0 + lams * diag[i] - l1[i] ** 2 - l2[i] ** 2)
    return l0, l1, l2


def _banded_solve(factor: tuple[np.ndarray, np.ndarray, np.ndarray], y: np.ndarray) -> np.ndarray:
    """(n, L, d): ``(L Lᵀ)⁻¹ y`` for each factor's λ, y (n, d)."""
    l0, l1, l2 = (f[..., None] for f in factor)
    n = y.shape[0]
    w = np.empty((n, l0.shape[1], y.shape[1]))
    for i in range(n):
        acc = y[i] - (l1[i] * w[i - 1] if i >= 1 else 0.0) - (l2[i] * w[i - 2] if i >= 2 else 0.0)
        w[i] = acc / l0[i]
    for i in range(n - 1, -1, -1):
        acc = w[i] - (l1[i + 1] * w[i + 1] if i + 1 < n else 0.0) - (l2[i + 2] * w[i + 2] if i + 2 < n else 0.0)
        w[i] = acc / l0[i]
    return w


def _banded_inverse_trace(factor: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """(L,) ``tr (L Lᵀ)⁻¹`` from the band of the inverse alone (Takahashi's
    recurrence, from the last row up: Σ_ij = (δ_ij / L_ii − Σ_k>i L_ki Σ_kj) / L_ii)."""
    l0, l1, l2 = factor
    n, count = l0.shape
    zero = np.zeros(count)
    s0 = [zero] * (n + 2)  # Σ[i, i]
    s1 = [zero] * (n + 2)  # Σ[i, i + 1]
    for i in range(n - 1, -1, -1):
        a = l1[i + 1] if i + 1 < n else zero  # L[i + 1, i]
        b = l2[i + 2] if i + 2 < n else zero  # L[i + 2, i]
        two = -(a * s1[i + 1] + b * s0[i + 2]) / l0[i]  # Σ[i, i + 2]
        s1[i] = -(a * s0[i + 1] + b * s1[i + 1]) / l0[i]
        s0[i] = (1.0 / l0[i] - a * s1[i] - b * two) / l0[i]
    return np.sum(s0[:n], axis=0)


def _unit_ramp(n: int) -> np.ndarray:
    """(n,) the straight line through the samples' times with mean 0 and norm 1."""
    ramp = np.arange(n) - (n - 1) / 2.0
    return ramp / np.linalg.norm(ramp)


def runs(frames: Sequence[int]) -> list[slice]:
    """Slices of ``frames`` (increasing indices) where each follows the last by one."""
    out, start = [], 0
    for i in range(1, len(frames) + 1):
        if i == len(frames) or frames[i] != frames[i - 1] + 1:
            out.append(slice(start, i))
            start = i
    return out


def smooth_clip(frames: Sequence[int], cams: np.ndarray, poses: np.ndarray, betas: np.ndarray,
                transforms: Sequence[CropTransform],
                joints_of: JointsOf | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One person's estimates over a whole video, smoothed with no lag.

    Each run of consecutive frames is smoothed on its own by
    :func:`whittaker_gcv`, with one λ per quantity: all joint rotation
    matrices together (then projected back onto rotations), the camera's
    image scale (log pixels per metre) and its image position (pixels, see
    :func:`camera_to_image`); the shape is the run's mean, and with
    ``joints_of`` each frame's camera is then solved again to keep the
    projection it gives the body with the shape smoothed like the rest
    (:func:`refit_cameras`).

    Args:
        frames: (T,) increasing frame indices of the estimates.
        cams: (T, 3) weak cameras (s, tx, ty), each relative to its frame's crop.
        poses: (T, 3·J) axis-angle; betas: (T, k).
        transforms: the T crops the cameras refer to.
        joints_of: the body's joints (:data:`JointsOf`), or None.
    Returns:
        Smoothed (cams (T, 3), poses (T, 3·J), betas (T, k)), float64.
    """
    cams, poses, betas = (np.asarray(x, dtype=np.float64) for x in (cams, poses, betas))
    t = len(frames)
    if not (cams.shape[0] == poses.shape[0] == betas.shape[0] == len(transforms) == t):
        raise ValueError(f"smooth_clip: {t} frames but {cams.shape[0]} cameras, {poses.shape[0]} "
                         f"poses, {betas.shape[0]} shapes and {len(transforms)} crops")
    if np.any(np.diff(np.asarray(frames)) <= 0):
        raise ValueError("smooth_clip: frame indices must increase")
    if t == 0:
        return cams.copy(), poses.copy(), betas.copy()
    matrices = axis_angle_to_matrix(torch.from_numpy(poses).reshape(t, -1, 3)).numpy()
    image_cams = np.stack([camera_to_image(c, tr) for c, tr in zip(cams, transforms)])
    out_m, out_b, out_c = matrices.copy(), betas.copy(), image_cams.copy()
    filtered = betas.copy()  # the shape smoothed as the rest is: the refit's reference
    for run in runs(frames):
        out_m[run] = whittaker_gcv(matrices[run])[0]
        out_b[run] = betas[run].mean(0)  # one person, one shape
        filtered[run] = whittaker_gcv(betas[run])[0]
        out_c[run, :1] = whittaker_gcv(image_cams[run, :1])[0]
        out_c[run, 1:] = whittaker_gcv(image_cams[run, 1:])[0]
    pose_out = matrix_to_axis_angle(torch.from_numpy(nearest_rotations(out_m))).reshape(t, -1).numpy()
    cam_out = np.stack([camera_from_image(c, tr) for c, tr in zip(out_c, transforms)])
    if joints_of is not None:
        cam_out = refit_cameras(cam_out, pose_out, filtered, out_b, joints_of)
    return cam_out, pose_out, out_b
