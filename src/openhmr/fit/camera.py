"""The fit's two cameras: projection, free parameters, and the torso's first guess.

``"weak"`` is HMR's weak-perspective camera (s, tx, ty) on an S×S crop, in
its normalised coordinates; ``"perspective"`` a pinhole of known focal length
and principal point, whose translation (tx, ty, tz), metres, is solved.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from openhmr.errors import InputError
from openhmr.geometry.camera import crop_normalised_to_pixels, crop_pixels_to_normalised

CAMERAS = ("weak", "perspective")


def read_pinhole(focal: float | Tensor | None,
                 principal_point: Tensor | np.ndarray | tuple[float, float] | None,
                 batch: int, dtype: torch.dtype,
                 device: torch.device) -> tuple[Tensor, Tensor]:
    """The pinhole's focal length (B,) and principal point (B, 2), pixels,
    from one for all or one per person.

    Raises:
        InputError: either is missing.
    """
    if focal is None or principal_point is None:
        raise InputError("the perspective camera needs a focal length and a principal point")
    # detached: a camera given with a graph is a constant here, as the targets are
    f = (focal.detach() if isinstance(focal, Tensor) else torch.as_tensor(focal)).to(
        dtype=dtype, device=device).reshape(-1)
    pp = (principal_point.detach() if isinstance(principal_point, Tensor)
          else torch.as_tensor(np.asarray(principal_point))).to(dtype=dtype, device=device)
    if f.numel() not in (1, batch) or not (torch.isfinite(f).all() and (f > 0).all()):
        raise InputError(f"focal must be one positive length in pixels, or one per person ({batch}), "
                         f"got {f.tolist()}")
    # By shape, not size: a (2, B) array would be read as B points scrambled.
    shape_ok = tuple(pp.shape) in ((2,), (1, 2), (batch, 2))
    if not shape_ok or not torch.isfinite(pp).all():
        got = f"shape {tuple(pp.shape)}" if not shape_ok else f"{pp.tolist()}"
        raise InputError(f"principal_point must be (2,) or ({batch}, 2) finite pixels, got {got}")
    return f.expand(batch).clone(), pp.reshape(-1, 2).expand(batch, 2).clone()


#: The perspective camera's least depth, metres: a point nearer (or behind) is
#: projected as if at it.
MIN_DEPTH_M = 1e-3


def project(points: Tensor, cam: Tensor, camera: str, crop_size: int,
            focal: Tensor | None, principal_point: Tensor | None) -> Tensor:
    """Body-frame points (B, N, 3), metres → (B, N, 2) pixels.

    ``camera="weak"``: ``cam`` (B, 3) is HMR's (s, tx, ty) and the pixels are
    the S×S crop's (S = ``crop_size``). ``"perspective"``: ``cam`` (B, 3) is
    the translation in metres, ``focal`` (B,) and ``principal_point`` (B, 2)
    pixels.
    """
    if camera == "weak":
        normalised = cam[:, None, :1] * (points[..., :2] + cam[:, None, 1:3])
        return crop_normalised_to_pixels(normalised, crop_size)
    if focal is None or principal_point is None:
        raise ValueError("the perspective camera needs focal and principal_point (see read_pinhole)")
    p = points + cam[:, None, :]
    z = p[..., 2:3].clamp(min=MIN_DEPTH_M)  # a point behind the camera must not flip sign
    return focal[:, None, None] * p[..., :2] / z + principal_point[:, None, :]


def cam_params(cam: Tensor, camera: str) -> Tensor:
    """Unconstrained parameters of a camera: log-scale for the weak one."""
    if camera == "weak":
        return torch.cat([cam[:, :1].clamp(min=1e-4).log(), cam[:, 1:]], 1).detach().clone()
    return cam.detach().clone()


def cam_from_params(p: Tensor, camera: str) -> Tensor:
    """The camera (B, 3) of :func:`cam_params`' parameters."""
    if camera == "weak":
        # The bound only keeps a wandering line search from overflowing.
        return torch.cat([p[:, :1].clamp(-20.0, 20.0).exp(), p[:, 1:]], 1)
    return p


def torso_init(points3d: Tensor, target: Tensor, conf: Tensor, names: tuple[str, ...],
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
    if focal is None or principal_point is None:
        raise ValueError("the perspective camera needs focal and principal_point (see read_pinhole)")
    tz = focal / ratio
    txy = (centre2 - principal_point) * (tz / focal)[:, None] - centre3[:, :2]
    return torch.cat([txy, (tz - centre3[:, 2])[:, None]], 1)
