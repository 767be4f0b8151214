"""The keypoints a fit is matched to: the input's sets against the body model's.

2D keypoints of any named set (``openhmr.body.keypoints``) are matched by name
to the body model's set that shares the most names with them; optional 3D
keypoints likewise, compared after centring both on the hips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from openhmr.body.base import BodyModel
from openhmr.body.keypoints import MAX_CONFIDENCE, get_set, index_map
from openhmr.errors import InputError
from openhmr.fit.config import PERSON_SIZE_PX, REFERENCE_NOISE_PX, FitConfig

_TORSO = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")


# A person whose confident keypoints span less than this many pixels was given
# in other units: HMR's normalised crop coordinates span at most 2.
MIN_EXTENT_PX = 4.0

#: Told keypoint noise, input pixels: the weight (√2/σ)² stays finite and
#: non-zero in float32 (the command line's --noise-px takes the same range).
NOISE_PX_RANGE = (1e-6, 1e6)

# How far from the hips a body's 3D keypoint can lie, metres (a raised hand
# of a 2.1 m person is ~1.4 m away); further means another unit.
MAX_REACH_M = 3.0


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


def hip_centre(points: Tensor, names: tuple[str, ...]) -> Tensor:
    """(B, K, C) → (B, C) midpoint of the hips (or the pelvis) of a set."""
    if "left_hip" in names and "right_hip" in names:
        return 0.5 * (points[:, names.index("left_hip")] + points[:, names.index("right_hip")])
    if "pelvis" in names:
        return points[:, names.index("pelvis")]
    raise InputError("3D keypoints need both hips or a pelvis to be centred")


def _as_tensor(x: Tensor | np.ndarray, dtype: torch.dtype, device: torch.device) -> Tensor:
    # Targets are data: a tensor that carries a graph would be back-propagated
    # through again at every step of the optimiser.
    return torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x.detach()).to(
        device=device, dtype=dtype)


@dataclass
class Targets:
    """2D keypoints matched to the body model's keypoint set.

    Attributes:
        keypoints: (B, K, 3) the input in its set's order (x, y pixels,
            confidence), non-finite points zeroed.
        finite: (B, K) which input points were finite (x, y and confidence).
        input_idx: (M,) the matched keypoints' indices in the input's set.
        model_set: the body model's set they are matched to.
        model_idx: (M,) their indices in ``model_set``.
        names: (M,) their names.
        points: (B, M, 2) pixels.
        conf: (B, M) confidences, 0 below ``FitConfig.conf_threshold``.
        unit: (B,) pixels per person-normalised pixel: the diagonal of the
            confident keypoints' box over HMR's person size, so the 2D weights
            do not depend on the image's resolution.
    """

    keypoints: Tensor
    finite: Tensor
    input_idx: list[int]
    model_set: str
    model_idx: list[int]
    names: tuple[str, ...]
    points: Tensor
    conf: Tensor
    unit: Tensor

    @property
    def batch(self) -> int:
        return int(self.points.shape[0])

    def torso_mask(self) -> Tensor:
        """(B, M) 1 on the shoulders and hips, stage 1's keypoints; for a
        person who shows fewer than two of those, all of the person's
        keypoints (per person, so that a person's fit does not depend on who
        else is in the batch)."""
        torso = torch.tensor([n in _TORSO for n in self.names], dtype=self.points.dtype,
                             device=self.points.device).expand_as(self.conf)
        few = (self.conf * torso).gt(0).sum(-1).lt(2)
        return torch.where(few[:, None], torch.ones_like(torso), torso)


def read_targets(body_model: BodyModel, keypoints2d: Tensor | np.ndarray, keypoint_set: str,
                 cfg: FitConfig, dtype: torch.dtype, device: torch.device) -> Targets:
    """Check the 2D keypoints (B, K, 3) or (K, 3) of ``keypoint_set`` and match them.

    Raises:
        InputError: an unknown set, a wrong shape, or a person without any
            confident keypoint the body model has.
    """
    try:
        input_set = get_set(keypoint_set)
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from None
    kp2d = _as_tensor(keypoints2d, dtype, device)
    if kp2d.ndim == 2:
        kp2d = kp2d[None]
    if kp2d.ndim != 3 or kp2d.shape[1:] != (len(input_set), 3):
        raise InputError(
            f"keypoints2d must be (B, {len(input_set)}, 3) for set {keypoint_set!r}, "
            f"got {tuple(kp2d.shape)}")
    if kp2d.shape[0] == 0:
        raise InputError("keypoints2d hold no person (B = 0): there is nobody to fit")
    finite = torch.isfinite(kp2d).all(-1)
    kp2d = torch.where(finite[..., None], kp2d, torch.zeros_like(kp2d))  # confidence 0: missing
    if float(kp2d[..., 2].max()) > MAX_CONFIDENCE:
        raise InputError(f"keypoint confidences must lie in [0, 1] (up to {MAX_CONFIDENCE:g} counts as 1), got up "
                         f"to {float(kp2d[..., 2].max()):.3g} (a percentage? divide by 100)")
    # a heatmap's peak a little above 1 is as sure as 1
    kp2d = torch.cat([kp2d[..., :2], kp2d[..., 2:].clamp(max=1.0)], -1)
    conf_in = torch.where(kp2d[..., 2] >= cfg.conf_threshold, kp2d[..., 2],
                          torch.zeros_like(kp2d[..., 2]))

    model_set = choose_model_set(body_model, keypoint_set, cfg.model_keypoint_set)
    model_idx, input_idx = (list(x) for x in index_map(model_set, keypoint_set))
    conf = conf_in[:, input_idx]
    # A point that counts for nothing is zeroed: weighted 0, its residual must
    # still be finite (0 · inf = NaN), whatever sentinel stands for "missing".
    points = torch.where(conf[..., None] > 0, kp2d[:, input_idx, :2], torch.zeros_like(kp2d[:, input_idx, :2]))
    if (conf.sum(-1) <= 0).any():
        raise InputError("a person has no confident keypoint that the body model can match")
    seen = conf > 0
    if (seen.sum(-1) < 2).any():
        # One point fixes neither the person's size nor anything of the pose.
        raise InputError("a person has only one confident keypoint that the body model can match; "
                         "a body needs at least two")
    big = torch.finfo(dtype).max
    lo = torch.where(seen[..., None], points, torch.full_like(points, big)).amin(1)
    hi = torch.where(seen[..., None], points, torch.full_like(points, -big)).amax(1)
    extent = (hi - lo).norm(dim=-1)
    if (extent[seen.sum(-1) >= 2] < MIN_EXTENT_PX).any():
        raise InputError(f"a person's confident keypoints span {float(extent.min()):.3g} px, too little to fit "
                         "(keypoints2d are pixels, of the crop for the weak camera, not normalised [-1, 1] "
                         "coordinates)")
    unit = (extent / PERSON_SIZE_PX).clamp(min=1e-3)
    return Targets(keypoints=kp2d, finite=finite, input_idx=input_idx, model_set=model_set,
                   model_idx=model_idx, names=tuple(input_set.names[i] for i in input_idx),
                   points=points, conf=conf, unit=unit)


def told_noise_weight(noise_px: float | Tensor | np.ndarray, targets: Targets) -> Tensor:
    """(B,) the 2D term's weight for keypoints of told noise σ (input pixels;
    one, or one per person): (REFERENCE_NOISE_PX / σ')², σ' = σ at HMR's
    person size (see ``FitConfig.noise_px``).

    Raises:
        InputError: not one σ or one per person, or not positive.
    """
    unit = targets.unit
    sigma = torch.as_tensor(np.asarray(noise_px, dtype=np.float64) if not isinstance(
        noise_px, Tensor) else noise_px.detach()).to(device=unit.device, dtype=unit.dtype).reshape(-1)
    if sigma.numel() not in (1, targets.batch):
        raise InputError(f"noise_px must be one σ or one per person ({targets.batch}), "
                         f"got {sigma.numel()}")
    low, high = NOISE_PX_RANGE
    if not (torch.isfinite(sigma).all() and (sigma >= low).all() and (sigma <= high).all()):
        raise InputError(f"noise_px must be a positive number of pixels, from {low:g} to {high:g}, "
                         f"got {sigma.tolist()}")
    return (REFERENCE_NOISE_PX * unit / sigma).pow(2)  # σ here is noise_px/unit


@dataclass
class Targets3D:
    """3D keypoints matched to the body model's keypoint set, hip-centred.

    Attributes:
        model_set: the body model's set they are matched to.
        model_idx: (M3,) their indices in it.
        names: (M3,) their names.
        points: (B, M3, 3) metres, camera-aligned, minus their hip centre.
        conf: (B, M3) confidences, 0 below the threshold or where not finite.
    """

    model_set: str
    model_idx: list[int]
    names: tuple[str, ...]
    points: Tensor
    conf: Tensor


def read_targets3d(body_model: BodyModel, keypoints3d: Tensor | np.ndarray,
                   keypoints3d_set: str, keypoint_set: str, cfg: FitConfig,
                   batch: int, dtype: torch.dtype, device: torch.device) -> Targets3D:
    """Check the 3D keypoints (B, K3, 4) or (K3, 4) of ``keypoints3d_set`` and match them.

    ``cfg.model_keypoint_set`` applies to them only when they are of the 2D
    keypoints' set.
    """
    kp3 = _as_tensor(keypoints3d, dtype, device)
    if kp3.ndim == 2:
        kp3 = kp3[None]
    try:
        size = len(get_set(keypoints3d_set))
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from None
    if kp3.shape != (batch, size, 4):
        raise InputError(f"keypoints3d must be (B, {size}, 4) for set "
                         f"{keypoints3d_set!r}, got {tuple(kp3.shape)}")
    model_set = choose_model_set(
        body_model, keypoints3d_set,
        cfg.model_keypoint_set if keypoints3d_set == keypoint_set else None)
    model_idx, input_idx = (list(x) for x in index_map(model_set, keypoints3d_set))
    names = tuple(get_set(keypoints3d_set).names[i] for i in input_idx)
    # non-finite points or confidences count as missing, as in the 2D keypoints
    kp3 = torch.where(torch.isfinite(kp3).all(-1, keepdim=True), kp3, torch.zeros_like(kp3))
    if kp3.numel() and float(kp3[..., 3].max()) > MAX_CONFIDENCE:
        raise InputError(f"3D keypoint confidences must lie in [0, 1] (up to {MAX_CONFIDENCE:g} counts as 1), got "
                         f"up to {float(kp3[..., 3].max()):.3g} (a percentage? divide by 100)")
    kp3 = torch.cat([kp3[..., :3], kp3[..., 3:].clamp(max=1.0)], -1)
    points = kp3[:, input_idx, :3]
    conf = torch.where(kp3[:, input_idx, 3] >= cfg.conf_threshold, kp3[:, input_idx, 3],
                       torch.zeros_like(kp3[:, input_idx, 3]))
    points = torch.where(conf[..., None] > 0, points, torch.zeros_like(points))  # as in read_targets
    # Both sides are centred on the hips (the model's own in the energy): a
    # person whose hips are not given has no centre to match, and no 3D term.
    centred = points - hip_centre(points, names)[:, None]
    hips_given = hip_centre((conf > 0).to(dtype)[..., None], names)[:, 0] == 1
    conf = conf * hips_given[:, None]
    reach = float((centred.norm(dim=-1) * (conf > 0)).max()) if conf.numel() else 0.0
    if reach > MAX_REACH_M:
        # Millimetres (Human3.6M's unit) would otherwise weigh nothing against the 2D term.
        unit = "centimetres (divide by 100)" if reach < 300.0 else "millimetres (divide by 1000)"
        raise InputError(f"keypoints3d are metres, yet a point lies {reach:.3g} from the hips "
                         f"(more than {MAX_REACH_M:g} m): {unit}?")
    return Targets3D(model_set=model_set, model_idx=model_idx, names=names, points=centred, conf=conf)
