"""Fitting a body model to a BlazePose detection, in HMR's crop (the demo's entry point)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from openhmr.body.base import BodyModel
from openhmr.errors import InputError
from openhmr.fit.config import FitConfig, FitInit, FitResult
from openhmr.fit.solve import MAX_CROP_REACH, fit

if TYPE_CHECKING:  # pragma: no cover
    from openhmr.data.crop import CropTransform
    from openhmr.detect import Detection


def within_reach(keypoints: np.ndarray, crop_size: float) -> np.ndarray:
    """(..., K, 3) keypoints in a crop's pixels, with confidence 0 where a
    point lies beyond the weak camera's reach (more than ``MAX_CROP_REACH``
    crop sides from the centre, which :func:`fit` refuses as image pixels
    given for crop ones) or is not finite: a detector's guess at a limb far
    out of a close-up, which the crop, sized on the visible points, does not
    hold."""
    kp = np.asarray(keypoints, dtype=np.float64)
    points = kp[..., :2]
    with np.errstate(invalid="ignore"):
        far = np.abs(points - crop_size / 2.0).max(-1) > MAX_CROP_REACH * crop_size
    conf = np.where(far | ~np.isfinite(points).all(-1), 0.0, kp[..., 2])
    return np.concatenate([points, conf[..., None]], -1)


def crop_keypoints(keypoints: np.ndarray, transform: "CropTransform") -> np.ndarray:
    """(K, 3) keypoints in image pixels (x, y, confidence) → the crop's
    pixels for the weak camera, :func:`within_reach`."""
    kp = np.asarray(keypoints, dtype=np.float64)
    return within_reach(np.concatenate([transform.image_to_crop(kp[:, :2]), kp[:, 2:3]], 1), transform.crop_size)


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
    Raises:
        InputError: ``image`` is not the (H, W, 3) RGB image the detection was
            made on, or ``use_3d`` for a detection without 3D landmarks.
    """
    from openhmr.data.crop import crop_pixels, crop_transform, scale_for_keypoints

    if not hasattr(detection, "keypoints2d") or not hasattr(detection, "image_size"):
        raise TypeError(f"detection must be detect_person's Detection, got {type(detection).__name__} "
                        "(arguments in the order image, detection, body_model)")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or tuple(image.shape[:2]) != tuple(detection.image_size):
        raise InputError(f"image is {image.shape}, but the detection was made on an RGB image of "
                         f"{tuple(detection.image_size)} (height, width), channels last: (H, W, 3)")
    if use_3d and detection.keypoints3d is None:
        raise InputError("this detection has no 3D landmarks; pass use_3d=False to fit its 2D keypoints alone")
    kp = np.asarray(detection.keypoints2d, dtype=np.float64)
    if transform is None:
        scale, centre = scale_for_keypoints(kp, conf_threshold=0.5)
        transform = crop_transform((image.shape[0], image.shape[1]), scale, centre, crop_size)
    crop = crop_pixels(image, transform)
    kp_crop = crop_keypoints(kp, transform)
    kp3 = np.asarray(detection.keypoints3d, dtype=np.float64)[None] if use_3d else None
    result = fit(
        body_model, kp_crop[None], detection.keypoint_set,
        keypoints3d=kp3, keypoints3d_set=detection.keypoint_set,
        camera="weak", crop_size=transform.crop_size, init=init, config=config,
    )
    return DetectionFit(crop=crop, transform=transform, result=result,
                        keypoints2d_crop=kp_crop.astype(np.float32))
