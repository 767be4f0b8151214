"""Smoothing a video's body estimates over time: the One-Euro filter.

An estimate made frame by frame (HMR's network, or a fit) has an error of its
own in every frame, so the body trembles even when the person stands still.
The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) is an exponential
low-pass filter whose cutoff frequency rises with the signal's speed: a still
body is smoothed strongly, a moving one follows with little lag. It is
causal (a frame's result depends only on the frames up to it), so it runs as
the video streams.

What :class:`BodySmoother` filters, each frame:

* the joint rotations as 3×3 matrices (axis-angle jumps where the angle
  passes π), projected back onto rotations; the speed that sets a joint's
  cutoff is that of its whole matrix, so the nine entries move together;
* the shape parameters;
* the camera in image space. A weak camera (s, tx, ty) is relative to its
  frame's crop, which moves when the crop follows the person; what is
  filtered instead is where the body's origin lands in the image and how
  many image pixels a metre spans (as its logarithm, and the position in
  those metres, so that every quantity has physical units), and the result
  is mapped back into each frame's crop.

A frame that does not directly follow the last one filtered (a frame without
a body in between) starts the filter afresh.
"""

from __future__ import annotations

import math
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


def nearest_rotations(matrices: np.ndarray) -> np.ndarray:
    """(..., 3, 3) → the nearest rotation matrices (Frobenius norm), by SVD."""
    u, _, vt = np.linalg.svd(matrices)
    u[..., :, 2] *= np.sign(np.linalg.det(u @ vt))[..., None]  # a reflection is not a rotation
    return u @ vt


def camera_to_image(cam: np.ndarray, transform: CropTransform) -> np.ndarray:
    """Weak camera (s, tx, ty) in a crop → (log pixels per metre, x, y metres):
    the body origin's image position divided by the image scale. The crop's
    x scale stands for both (they differ by pixel rounding, ~1/width)."""
    half = transform.crop_size / 2.0
    s, t = float(cam[0]), np.asarray(cam[1:3], dtype=np.float64)
    per_metre = half * s / transform.scale_x
    origin = transform.crop_to_image(half * (1.0 + s * t))
    return np.concatenate([[math.log(per_metre)], origin / per_metre])


def camera_from_image(image_cam: np.ndarray, transform: CropTransform) -> np.ndarray:
    """Inverse of :func:`camera_to_image` for ``transform``'s crop."""
    half = transform.crop_size / 2.0
    per_metre = math.exp(float(image_cam[0]))
    s = per_metre * transform.scale_x / half
    t = (transform.image_to_crop(np.asarray(image_cam[1:3]) * per_metre) / half - 1.0) / s
    return np.concatenate([[s], t])


@dataclass
class SmoothingConfig:
    """One-Euro settings (min_cutoff Hz, beta) per quantity, for a video's frame rate.

    Chosen on the synthetic videos of ``benchmarks/fit_video.py`` (see
    README, "Videos"): rotations in matrix entries per second, shape in its
    own units per second, camera position in metres per second, camera
    scale in log units per second.
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
    """

    def __init__(self, fps: float, config: SmoothingConfig | None = None) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.dt = 1.0 / fps
        c = config or SmoothingConfig()
        self.rotations = OneEuroFilter(*c.rotation, speed_axes=2)
        self.shape = OneEuroFilter(*c.shape, speed_axes=1)
        self.position = OneEuroFilter(*c.position, speed_axes=1)
        self.scale = OneEuroFilter(*c.scale)
        self.last_frame: int | None = None

    def reset(self) -> None:
        for f in (self.rotations, self.shape, self.position, self.scale):
            f.reset()
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
        image_cam = np.concatenate([self.scale(image_cam[:1], self.dt), self.position(image_cam[1:], self.dt)])
        return camera_from_image(image_cam, transform), pose_out, self.shape(betas, self.dt)
