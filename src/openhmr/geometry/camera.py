"""HMR's weak-perspective camera and the conversions between coordinate frames.

Frames, written down once:

* **Body / camera frame** (metres): x right, y down, z away from the camera,
  as bodies come out of the body model under HMR's mean root rotation.
* **Normalised crop coordinates**: the network's 2D output. −1 is the left
  (top) edge of the crop and +1 the right (bottom) edge: x_n = 2·u/S − 1 for
  crop pixel coordinate u and crop size S (224).
* **Crop pixels** u ∈ [0, S): u = (x_n + 1)·S/2, i.e. 112·(1 + x_n) for S = 224.
* **Image pixels**: crop pixels mapped back through the crop's scale and
  offset (``openhmr.data.crop``).

Pixel coordinates here are continuous with pixel i covering [i, i+1), the
convention of HMR's label normalisation.
"""

from __future__ import annotations

import torch
from torch import Tensor

CROP_SIZE = 224
# The demo's render camera: focal length 500 px at the 224 crop.
HMR_FOCAL_PX = 500.0


def weak_perspective_project(points: Tensor, cam: Tensor) -> Tensor:
    """HMR's ``batch_orth_proj_idrot``: x = s·(X + tx), y = s·(Y + ty).

    The translation is added before scaling and depth is ignored.

    Args:
        points: (B, N, 3) points in the body frame, metres.
        cam: (B, 3) camera (s, tx, ty).
    Returns:
        (B, N, 2) normalised crop coordinates.
    """
    s = cam[:, None, :1]
    t = cam[:, None, 1:3]
    return s * (points[..., :2] + t)


def crop_normalised_to_pixels(x: Tensor, crop_size: int = CROP_SIZE) -> Tensor:
    """Normalised crop coordinates in [-1, 1] → crop pixels in [0, crop_size)."""
    return (x + 1.0) * (crop_size / 2.0)


def crop_pixels_to_normalised(u: Tensor, crop_size: int = CROP_SIZE) -> Tensor:
    """Crop pixels → normalised crop coordinates (the inverse of the above)."""
    return u * (2.0 / crop_size) - 1.0


def weak_to_perspective_translation(
    cam: Tensor, focal: float = HMR_FOCAL_PX, crop_size: int = CROP_SIZE
) -> Tensor:
    """Translation of the pinhole camera that reproduces the weak projection.

    A pinhole camera with focal ``focal`` px and principal point at the crop
    centre, looking at the body shifted by (tx, ty, tz) with
    tz = focal / (crop_size/2 · s), projects points at depth tz exactly where
    the weak-perspective camera does (HMR's ``get_original``).

    Args:
        cam: (B, 3) weak-perspective camera (s, tx, ty).
    Returns:
        (B, 3) translation (tx, ty, tz), metres.
    """
    s, tx, ty = cam.unbind(-1)
    tz = focal / (0.5 * crop_size * s)
    return torch.stack([tx, ty, tz], dim=-1)


def perspective_project(
    points: Tensor, focal: Tensor | float, principal_point: Tensor, translation: Tensor | None = None
) -> Tensor:
    """Pinhole projection u = f·X/Z + c of camera-frame points.

    Args:
        points: (B, N, 3) metres.
        focal: scalar or (B,) focal length, pixels.
        principal_point: (2,) or (B, 2) pixels.
        translation: optional (B, 3) added to the points first.
    Returns:
        (B, N, 2) pixels.
    """
    if translation is not None:
        points = points + translation[:, None, :]
    focal = torch.as_tensor(focal, dtype=points.dtype, device=points.device)
    if focal.ndim == 1:
        focal = focal[:, None, None]
    pp = torch.as_tensor(principal_point, dtype=points.dtype, device=points.device)
    if pp.ndim == 2:
        pp = pp[:, None, :]
    return focal * points[..., :2] / points[..., 2:3] + pp
