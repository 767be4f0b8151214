"""Person crops: where the person is → a 224×224 network input, and back.

HMR feeds its network a square crop in which the person is about 150 px tall
(HMR_REFERENCE §10.3, §11). Cropping has two steps:

1. **Scale and centre.** A person given by 2D keypoints is scaled so that the
   diagonal of the box around its confident keypoints becomes 150 px, centred
   on that box (``scale_for_keypoints``, the original's OpenPose path). A
   person box is treated the same way (``scale_for_bbox``, see its note). An
   image assumed to be tightly cropped already has its longer side scaled to
   224 and is centred on the image centre (``scale_for_tight_crop``).
2. **Scale and crop** (``scale_and_crop``). The original resizes the whole
   image to floor(H·s) × floor(W·s) with bilinear ``cv2.resize``, rounds the
   scaled centre to an integer pixel, pads the scaled image by edge
   replication and cuts the 224 window centred on that pixel. This module
   computes the same pixels while only sampling the 224×224 window from the
   source image (the cost does not grow with the photo's size), and records
   the *actual* resize factors floor(W·s)/W and floor(H·s)/H.

Coordinates are continuous pixel coordinates with pixel i covering [i, i+1)
(``openhmr.geometry.camera``). In these coordinates ``cv2.resize`` maps a
source point x to x·f exactly, so the crop transform is a per-axis scale and a
shift: u = x·f − start. The original maps network outputs back to the image
with the *requested* scale rather than the actual one (HMR_REFERENCE Q16); here
both directions use the actual factors, so image → crop → image is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from openhmr.errors import InputError

CROP_SIZE = 224
# HMR's training crops show the person with a keypoint-box diagonal of ~150 px.
PERSON_SIZE_PX = 150.0
# OpenPose keypoints count as visible above this confidence (the original's vis_thr).
KEYPOINT_CONF_THRESHOLD = 0.2

ArrayLike = np.ndarray | Tensor


@dataclass(frozen=True)
class CropTransform:
    """The map between image pixels and the pixels of one square crop.

    image → crop:  u = x·scale_x − start_x,   v = y·scale_y − start_y
    crop → image:  x = (u + start_x) / scale_x, y = (v + start_y) / scale_y

    Attributes:
        scale_x, scale_y: actual resize factors, floor(W·s)/W and floor(H·s)/H.
        start: (x, y) top-left corner of the crop in the scaled image, pixels
            (the rounded scaled centre minus crop_size/2; may be negative or
            beyond the scaled image, where the crop holds edge-padded pixels).
        crop_size: side of the square crop, pixels.
        requested_scale: the scale that was asked for (the original records
            only this one).
        scaled_size: (height, width) of the scaled image, floor(H·s), floor(W·s).
    """

    scale_x: float
    scale_y: float
    start: tuple[int, int]
    crop_size: int = CROP_SIZE
    requested_scale: float = 1.0
    scaled_size: tuple[int, int] = (0, 0)

    def _factors(self, points: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
        scale = [self.scale_x, self.scale_y]
        start = [float(self.start[0]), float(self.start[1])]
        if isinstance(points, Tensor):
            dtype = points.dtype if points.is_floating_point() else torch.float64
            return (torch.tensor(scale, dtype=dtype, device=points.device),
                    torch.tensor(start, dtype=dtype, device=points.device))
        return np.asarray(scale), np.asarray(start)

    def image_to_crop(self, points: ArrayLike) -> ArrayLike:
        """(..., 2) image pixels → (..., 2) crop pixels (numpy or torch; a list
        is taken as numpy)."""
        points = points if isinstance(points, (np.ndarray, torch.Tensor)) else np.asarray(points, np.float64)
        scale, start = self._factors(points)
        return points[..., :2] * scale - start

    def crop_to_image(self, points: ArrayLike) -> ArrayLike:
        """(..., 2) crop pixels → (..., 2) image pixels (numpy or torch; a list
        is taken as numpy)."""
        points = points if isinstance(points, (np.ndarray, torch.Tensor)) else np.asarray(points, np.float64)
        scale, start = self._factors(points)
        return (points[..., :2] + start) / scale

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The crop's extent in image pixels, (x0, y0, x1, y1)."""
        corners = self.crop_to_image(np.array([[0.0, 0.0], [self.crop_size, self.crop_size]]))
        return (float(corners[0, 0]), float(corners[0, 1]),
                float(corners[1, 0]), float(corners[1, 1]))

    def perspective_camera(
        self, cam: ArrayLike, focal_crop_px: float = 500.0
    ) -> dict[str, np.ndarray]:
        """The pinhole camera in image pixels that reproduces HMR's overlay.

        HMR renders its weak-perspective result with a pinhole camera of focal
        ``focal_crop_px`` at the crop centre, the body translated by
        (tx, ty, tz = focal/(crop_size/2 · s)) (HMR_REFERENCE §6, §11
        ``get_original``). Mapped to the image, the focal lengths become
        focal/scale and the principal point the crop centre's image position.

        Args:
            cam: (3,) or (B, 3) weak-perspective cameras (s, tx, ty).
        Returns:
            ``focal`` (2,) (fx, fy) image pixels, ``principal_point`` (2,)
            image pixels, ``translation`` (..., 3) metres, added to the
            body-frame points (x right, y down, z forward).
        """
        cam = np.asarray(cam, dtype=np.float64)
        s, tx, ty = cam[..., 0], cam[..., 1], cam[..., 2]
        with np.errstate(divide="ignore"):  # s = 0 (broken weights) is an infinite depth, refused on writing
            tz = focal_crop_px / (0.5 * self.crop_size * s)
        half = self.crop_size / 2.0
        return {
            "focal": np.array([focal_crop_px / self.scale_x, focal_crop_px / self.scale_y]),
            "principal_point": np.asarray(self.crop_to_image(np.array([half, half]))),
            "translation": np.stack([tx, ty, tz], axis=-1),
        }

    def to_dict(self) -> dict:
        return {
            "scale_x": self.scale_x,
            "scale_y": self.scale_y,
            "start": [int(self.start[0]), int(self.start[1])],
            "crop_size": self.crop_size,
            "requested_scale": self.requested_scale,
            "scaled_size": [int(self.scaled_size[0]), int(self.scaled_size[1])],
        }


def _check_scale(scale: float) -> float:
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise InputError(f"the person's scale must be a positive number, got {scale}")
    return scale


def scale_for_keypoints(
    keypoints: np.ndarray, conf_threshold: float = KEYPOINT_CONF_THRESHOLD,
    person_size: float = PERSON_SIZE_PX,
) -> tuple[float, np.ndarray]:
    """Scale and centre from 2D keypoints, as the original's OpenPose path.

    The box of the keypoints whose confidence exceeds ``conf_threshold`` is
    scaled so that its diagonal becomes ``person_size`` (150 px), and the
    crop is centred on the box midpoint.

    Args:
        keypoints: (K, 2) image pixels, or (K, 3) with a confidence column.
    Returns:
        (scale, centre (2,) image pixels x, y).
    Raises:
        InputError: no confident keypoint, or all at one point.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 2 or kp.shape[1] not in (2, 3):
        raise InputError(f"keypoints must be (K, 2) or (K, 3), got shape {kp.shape}")
    if kp.shape[1] == 3:
        kp = kp[kp[:, 2] > conf_threshold]
    kp = kp[np.isfinite(kp[:, :2]).all(axis=1), :2]
    if len(kp) == 0:
        raise InputError(f"no keypoint has a confidence above {conf_threshold}")
    lo, hi = kp.min(axis=0), kp.max(axis=0)
    diagonal = float(np.linalg.norm(hi - lo))
    if diagonal <= 0:
        raise InputError("the person's keypoints all lie at one point (a box of zero size)")
    return person_size / diagonal, (lo + hi) / 2.0


def scale_for_bbox(
    box: tuple[float, float, float, float] | np.ndarray, person_size: float = PERSON_SIZE_PX
) -> tuple[float, np.ndarray]:
    """Scale and centre from a person box (x0, y0, x1, y1) in image pixels.

    HMR has no box input. The field's usual rule for detector boxes (the
    box's longer side, enlarged 1.2×, fills the crop, i.e. becomes ~187 px)
    would show people about 30% larger than HMR's training crops, beyond its
    scale augmentation (0.8–1.23). So a box is treated like the keypoint box
    HMR was trained with: its diagonal becomes 150 px, centred on the box.
    A tight person box is a few percent larger than the keypoint box (feet,
    hair), well inside that augmentation range; the diagonal also keeps the
    scale stable for people who sit, lie or stretch their arms.

    Returns:
        (scale, centre (2,) image pixels).
    Raises:
        InputError: a box with zero or negative width or height.
    """
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.size != 4:
        raise InputError(f"a box is 4 values x0, y0, x1, y1, got {values.size}")
    x0, y0, x1, y1 = (float(v) for v in values)
    if not all(np.isfinite([x0, y0, x1, y1])):
        raise InputError(f"the box {x0},{y0},{x1},{y1} has a non-finite coordinate")
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"the box {x0:g},{y0:g},{x1:g},{y1:g} has zero size "
                         "(expected x0,y0,x1,y1 with x1 > x0 and y1 > y0)")
    diagonal = float(np.hypot(x1 - x0, y1 - y0))
    return person_size / diagonal, np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0])


def scale_for_tight_crop(height: int, width: int, *, crop_size: int = CROP_SIZE) -> tuple[float, np.ndarray]:
    """The original demo without keypoints: the image is the person's crop.

    The longer side is scaled to ``crop_size`` (scale 1 when it already is),
    and the centre is the rounded image centre (numpy's round-half-even).
    ``crop_size`` is keyword-only, so ``*image.shape`` of a colour image (three
    values) is refused rather than taken as a 3-px crop.

    Returns:
        (scale, centre (2,) image pixels x, y).
    Raises:
        ValueError: a side that is not positive.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"an image of {height}×{width} pixels has no crop")
    longer = max(height, width)
    scale = 1.0 if longer == crop_size else crop_size / longer
    center = np.round(np.array([height / 2.0, width / 2.0]))[::-1].copy()
    return scale, center


def crop_transform(
    image_size: tuple[int, int], scale: float, center: np.ndarray, crop_size: int = CROP_SIZE
) -> CropTransform:
    """The crop of ``scale_and_crop`` for an image of (height, width), without pixels.

    Reproduces the original's integer arithmetic: scaled size
    floor((H, W)·scale), actual factors scaled/original, and a crop whose
    centre is the scaled centre rounded half-to-even.
    """
    scale = _check_scale(scale)
    height, width = int(image_size[0]), int(image_size[1])
    if height < 1 or width < 1:
        raise InputError(f"the image has no pixels ({height}×{width})")
    new_h, new_w = (np.floor(np.array([height, width]) * scale)).astype(int)
    if new_h < 1 or new_w < 1:
        raise InputError(f"scale {scale:g} shrinks the {width}×{height} image below one pixel")
    factor_x, factor_y = new_w / float(width), new_h / float(height)
    center = np.asarray(center, dtype=np.float64).reshape(2)
    if not np.isfinite(center).all():
        raise InputError(f"the crop centre {center.tolist()} is not finite")
    center_scaled = np.round(center * np.array([factor_x, factor_y])).astype(int)
    half = crop_size // 2
    return CropTransform(
        scale_x=factor_x, scale_y=factor_y,
        start=(int(center_scaled[0] - half), int(center_scaled[1] - half)),
        crop_size=crop_size, requested_scale=scale, scaled_size=(int(new_h), int(new_w)),
    )


def _bilinear_taps(
    start: int, crop_size: int, scaled: int, source: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source pixel pairs and weights for one axis of the crop.

    Crop pixel j shows scaled pixel k = start + j, clamped into the scaled
    image (edge padding). ``cv2.resize`` samples scaled pixel k at source
    position (k + 0.5)·(source/scaled) − 0.5, clamped to the image, and mixes
    its two neighbours linearly.
    """
    k = np.clip(np.arange(start, start + crop_size), 0, scaled - 1)
    pos = (k + 0.5) * (source / scaled) - 0.5
    pos = np.clip(pos, 0.0, source - 1.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, source - 1)
    return lo, hi, (pos - lo).astype(np.float32)


def crop_pixels(image: np.ndarray, transform: CropTransform) -> np.ndarray:
    """Sample the crop of ``transform`` from ``image`` (H, W) or (H, W, C).

    Equals resizing the whole image with ``cv2.resize`` (bilinear), edge
    padding and cutting the window (within one grey level: OpenCV rounds its
    weights to 11 bits), but touches only the crop_size² window's taps.

    Returns:
        (crop_size, crop_size[, C]) array of the image's dtype.
    """
    height, width = image.shape[:2]
    new_h, new_w = transform.scaled_size
    x0, x1, wx = _bilinear_taps(transform.start[0], transform.crop_size, new_w, width)
    y0, y1, wy = _bilinear_taps(transform.start[1], transform.crop_size, new_h, height)
    # Gather the 2×2 taps of every crop pixel: whole rows first (contiguous
    # copies, the fastest gather in numpy), then columns.
    n = transform.crop_size
    taps = image.take(np.concatenate([y0, y1]), axis=0)
    taps = taps.take(np.concatenate([x0, x1]), axis=1).astype(np.float32)
    if image.ndim == 3:
        wx, wy = wx[:, None], wy[:, None, None]
    else:
        wy = wy[:, None]
    rows = taps[:, :n] + (taps[:, n:] - taps[:, :n]) * wx
    out = rows[:n] + (rows[n:] - rows[:n]) * wy
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(image.dtype)


def scale_and_crop(
    image: np.ndarray, scale: float, center: np.ndarray, crop_size: int = CROP_SIZE
) -> tuple[np.ndarray, CropTransform]:
    """The original's ``scale_and_crop``: a crop_size² window of the scaled image.

    Args:
        image: (H, W) or (H, W, C) image, any dtype (uint8 in the demo).
        scale: requested scale (crop pixels per image pixel).
        center: (2,) crop centre (x, y) in image pixels.
    Returns:
        (crop (crop_size, crop_size[, C]) of the image's dtype, its CropTransform).
    Raises:
        ValueError: ``image`` is not an (H, W) or (H, W, C ≤ 4) array (a
            channels-first or batched image would be cropped along the wrong axes).
    """
    if not isinstance(image, np.ndarray) or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] <= 4)):
        raise ValueError(f"image must be a numpy (H, W) or (H, W, C) array, channels last, got "
                         f"{getattr(image, 'shape', type(image).__name__)}")
    transform = crop_transform((image.shape[0], image.shape[1]), scale, center, crop_size)
    return crop_pixels(image, transform), transform


def normalize_crop(crops: np.ndarray) -> Tensor:
    """uint8 RGB crops (B, S, S, 3) or (S, S, 3) → float (B, 3, S, S) in [-1, 1].

    HMR's input normalisation, 2·(x/255 − 0.5).

    Raises:
        ValueError: not a uint8 array of that layout (a channels-first or
            RGBA crop, or floats whose range cannot be told, would otherwise
            come out as a plausible-looking but meaningless tensor).
    """
    crops = np.asarray(crops)
    if crops.ndim not in (3, 4) or crops.shape[-1] != 3:
        raise ValueError(f"crops must be RGB (B, S, S, 3) or (S, S, 3), channels last, got {crops.shape}")
    if crops.dtype != np.uint8:
        raise ValueError(f"crops must be uint8 (0–255), got {crops.dtype}; for floats in [0, 1] pass "
                         "(crops * 255).round().astype(np.uint8)")
    x = torch.from_numpy(np.ascontiguousarray(crops)).float()
    if x.ndim == 3:
        x = x[None]
    return (x / 255.0 - 0.5).mul_(2.0).permute(0, 3, 1, 2).contiguous()


def folder_tight_crops(folder: Path, limit: int) -> Tensor:
    """Up to ``limit`` images of ``folder`` (searched recursively, sorted),
    each taken as a tight crop: normalised crops (N, 3, 224, 224) in [-1, 1].

    Raises:
        InputError: ``folder`` is not a folder, or holds no image.
    """
    from openhmr.io.images import collect_inputs, read_image

    if not folder.is_dir():
        raise InputError(f"not a folder of images: {folder}")
    crops = []
    for item in collect_inputs([folder]):
        if item.kind != "image":
            continue
        image = read_image(item.path)
        scale, center = scale_for_tight_crop(*image.shape[:2])
        crops.append(scale_and_crop(image, scale, center)[0])
        if len(crops) >= limit:
            break
    if not crops:
        raise InputError(f"no images found in {folder}")
    return normalize_crop(np.stack(crops))
