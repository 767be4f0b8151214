"""HMR's online preprocessing and augmentation (HMR_REFERENCE §10.4), reproducible.

For one stored sample (image + labels, as written by the converters), in the
original's order:

1. translation jitter: integers t ∈ [−20, 19]² added to the stored centre;
2. scale jitter: f ~ U[0.8, 1.23); the image becomes int(W·f) × int(H·f),
   keypoints are scaled by the *actual* ratios int(W·f)/W, int(H·f)/H, and
   the jittered centre is scaled the same way and truncated to an integer;
3. edge-replicated padding and 4. the 224×224 crop starting at
   centre − 112. Steps 2–4 only sample the 224² window from the stored
   image (``scaled_crop``, one ``cv2.warpAffine``), which gives the pixels of
   resizing the whole image and cutting the window, at a cost independent of
   the image size;
5. random horizontal flip (p = 0.5): the image is mirrored, keypoints take
   x' = 224 − x and the 19-joint left/right permutation, the body pose is
   reflected (``reflect_pose``: permute joints, multiply each axis-angle
   triplet, the root's included, by (1, −1, −1), HMR_REFERENCE Q5), and the
   3D joints are permuted and their x negated;
6. keypoints → x_n = 2x/224 − 1, with invisible points set to (0, 0, 0);
7. image → [−1, 1] as 2·(v/255 − 0.5), laid out (3, 224, 224).

Deliberate differences from the original, each behind a flag that restores it:

* ``hmr_flip_offset`` (default False): the original mirrors keypoints with
  x' = 223 − x, one pixel off the image mirror (HMR_REFERENCE Q16); openhmr
  uses the exact mirror x' = 224 − x in continuous pixel coordinates.
* ``hmr_center_flipped_joints3d`` (default False): the original subtracts
  the mean of the 14 joints from flipped samples only. The 3D loss aligns by
  the pelvis, so this does not change training; dropping it makes the flip an
  exact involution.

Also different, without a flag: the resampling uses half-pixel centres (as
``cv2.resize`` and TF2), where TF1's ``resize_images`` sampled with corners
aligned at 0 and so shifted the content by up to half a source pixel against
the labels; and the crop is sampled from the uint8 image and rounded to uint8
before normalisation (a ≤ 1/255 difference).

Off by default (the original has none of them): colour jitter, in-plane
rotation (±30°, rotating keypoints, the 3D joints and the root pose about the
camera axis; applied to the crop before the flip, its corners edge-filled)
and synthetic occlusion (a random grey rectangle). For a body model other
than SMPL, pass its ``joint_flip`` in the config (``AugmentConfig(joint_flip=
model.joint_flip)``) so that flipped poses swap its own left/right joints.

All randomness comes from the ``numpy.random.Generator`` passed in, drawn in
a fixed order, so a sample's augmentation is reproducible from its seed
(``openhmr.data.shards.sample_rng``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from openhmr.body.keypoints import COCOPLUS19, LSP14, SMPL24
from openhmr.errors import require_opencv

CROP_SIZE = 224
TRANS_MAX = 20
SCALE_RANGE = (0.8, 1.23)
FLIP_PROB = 0.5


@dataclass(frozen=True)
class AugmentConfig:
    """Options of ``augment_sample`` (defaults: the original's training settings).

    Attributes:
        crop_size: network input side, pixels.
        trans_max: translation jitter, integers in [−trans_max, trans_max).
        scale_range: scale jitter factor range [lo, hi).
        flip_prob: probability of a horizontal flip.
        hmr_flip_offset: mirror keypoints as x' = size − 1 − x (the original).
        hmr_center_flipped_joints3d: mean-centre the 3D joints of flipped
            samples (the original).
        joint_flip: the body model's joint permutation under a mirror
            (``BodyModel.joint_flip``; SMPL's by default).
        color_jitter: c > 0 multiplies each colour channel by U[1−c, 1+c].
        rotation_max_deg: r > 0 rotates by U[−r, r] degrees (with
            ``rotation_prob``) about the crop centre.
        rotation_prob: probability of rotating when ``rotation_max_deg`` > 0.
        occlusion_prob: probability of pasting a random grey rectangle whose
            sides are U[occlusion_size] × crop_size.
        occlusion_size: (min, max) rectangle side as a fraction of the crop.
    """

    crop_size: int = CROP_SIZE
    trans_max: int = TRANS_MAX
    scale_range: tuple[float, float] = SCALE_RANGE
    flip_prob: float = FLIP_PROB
    hmr_flip_offset: bool = False
    hmr_center_flipped_joints3d: bool = False
    joint_flip: tuple[int, ...] = SMPL24.flip_permutation
    color_jitter: float = 0.0
    rotation_max_deg: float = 0.0
    rotation_prob: float = 0.6
    occlusion_prob: float = 0.0
    occlusion_size: tuple[float, float] = (0.1, 0.4)


_COCOPLUS19_FLIP = list(COCOPLUS19.flip_permutation)  # computed once: flip_permutation builds it per call
_LSP14_FLIP = list(LSP14.flip_permutation)


NO_AUGMENTATION = AugmentConfig(trans_max=0, scale_range=(1.0, 1.0), flip_prob=0.0)
"""Evaluation / overfitting: crop at the stored centre and scale, nothing random."""


_Pose = TypeVar("_Pose", Tensor, np.ndarray)


def reflect_pose(pose: _Pose, joint_flip: Sequence[int]) -> _Pose:
    """Mirror a body pose under x → −x (left and right swap).

    Joint j of the result takes the rotation of joint ``joint_flip[j]``, and
    every axis-angle triplet, the root's included, is multiplied by
    (1, −1, −1): for the mirror M = diag(−1, 1, 1), M·R(ω)·M = R(ω_x, −ω_y, −ω_z).
    The posed mesh of the result is the mirror image of the original's
    (for a left/right-symmetric body model).

    Args:
        pose: (..., 3·J) axis-angle, numpy or torch.
        joint_flip: (J,) permutation (``BodyModel.joint_flip``).
    Returns:
        (..., 3·J) reflected pose, same type and dtype.
    """
    perm = list(joint_flip)
    j = len(perm)
    if pose.shape[-1] != 3 * j:
        raise ValueError(f"pose has {pose.shape[-1]} values, joint_flip expects 3·{j}")
    sign = [1.0, -1.0, -1.0]
    if isinstance(pose, Tensor):
        triplets = pose.reshape(*pose.shape[:-1], j, 3)[..., perm, :]
        return (triplets * triplets.new_tensor(sign)).reshape(pose.shape)
    arrays = np.asarray(pose).reshape(*pose.shape[:-1], j, 3)[..., perm, :]
    return (arrays * np.asarray(sign, dtype=arrays.dtype)).reshape(pose.shape)


def flip_joints3d(joints: np.ndarray, center_mean: bool = False) -> np.ndarray:
    """Mirror (14, 3) LSP joints: left/right permutation and x negated.

    ``center_mean`` also subtracts the mean of the 14 joints (the original).
    """
    out = joints[_LSP14_FLIP] * np.array([-1.0, 1.0, 1.0], dtype=joints.dtype)
    if center_mean:
        out = out - out.mean(axis=0, keepdims=True)
    return out


def flip_crop(image: np.ndarray, keypoints: np.ndarray, pose: np.ndarray | None,
              joints3d: np.ndarray | None, config: AugmentConfig = AugmentConfig()
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Horizontal flip of a square crop and its labels (step 5).

    Args:
        image: (S, S, C) crop.
        keypoints: (19, 3) cocoplus x, y in crop pixels, visibility.
        pose: (3·J,) axis-angle or None.
        joints3d: (14, 3) or None.
    Returns:
        The flipped (image, keypoints, pose, joints3d).
    """
    size = image.shape[1]
    kp = keypoints[_COCOPLUS19_FLIP]  # fancy indexing copies
    kp[:, 0] = (size - 1 if config.hmr_flip_offset else size) - kp[:, 0]
    flipped_pose = None if pose is None else reflect_pose(pose, config.joint_flip)
    flipped_j3d = None if joints3d is None else flip_joints3d(
        joints3d, config.hmr_center_flipped_joints3d)
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] <= 4:
        import cv2  # the crop came from OpenCV; a pure permutation of pixels, ~20x numpy's reversed copy

        mirrored = cv2.flip(np.ascontiguousarray(image), 1)
    else:
        mirrored = np.ascontiguousarray(image[:, ::-1])
    return mirrored, kp, flipped_pose, flipped_j3d


def normalize_keypoints(keypoints: np.ndarray, crop_size: int = CROP_SIZE) -> np.ndarray:
    """(K, 3) crop pixels → normalised [−1, 1] (x, y, vis); invisible → (0, 0, 0)."""
    vis = (keypoints[:, 2:3] > 0).astype(np.float32)
    xy = 2.0 * keypoints[:, :2] / crop_size - 1.0
    return (np.concatenate([xy, vis], axis=1) * vis).astype(np.float32)


def _rotation_z(angle_rad: float) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotate_crop(image: np.ndarray, keypoints: np.ndarray, pose: np.ndarray | None,
                joints3d: np.ndarray | None, angle_deg: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Rotate a square crop and its labels in the image plane.

    Image points move by p' = c + R(θ)(p − c) about the crop centre c
    (image axes, y down), which is the rotation Rz(θ) about the camera's
    z axis in HMR's camera frame (x right, y down, z forward). So the root
    rotation becomes Rz·R_root and the 3D joints Rz·X; the weak-perspective
    projection of the rotated body is the rotated projection (up to the
    camera translation, which the network predicts).
    """
    cv2 = require_opencv("training's crops and augmentation")

    from openhmr.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle

    size = image.shape[0]
    theta = np.deg2rad(angle_deg)
    rz = _rotation_z(theta)
    # cv2 puts pixel centres at integers; the continuous crop centre size/2 is
    # pixel coordinate size/2 − 0.5 there.
    c_px = size / 2.0 - 0.5
    affine = np.concatenate([rz[:2, :2], (np.array([c_px, c_px]) - rz[:2, :2] @ [c_px, c_px])[:, None]], 1)
    out = cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    kp = keypoints.copy()
    c = size / 2.0
    kp[:, :2] = (kp[:, :2] - c) @ rz[:2, :2].T + c
    new_pose = None
    if pose is not None:
        new_pose = pose.copy()
        root = axis_angle_to_matrix(torch.as_tensor(pose[None, :3], dtype=torch.float64))[0]
        rotated = torch.as_tensor(rz) @ root
        new_pose[:3] = matrix_to_axis_angle(rotated[None])[0].numpy().astype(pose.dtype)
    new_j3d = None if joints3d is None else (joints3d @ rz.T).astype(joints3d.dtype)
    return out, kp, new_pose, new_j3d


def scaled_crop(image: np.ndarray, fx: float, fy: float, start: tuple[int, int], size: int) -> np.ndarray:
    """The size² window at ``start`` of the image resized by (fx, fy), edge-padded.

    Equals ``cv2.resize`` (bilinear, half-pixel centres) of the whole image to
    (W·fx, H·fy), edge padding of that scaled image and cutting the window
    (within ~1 grey level, a few at sharp edges: OpenCV quantises sub-pixel
    positions to 1/32 px),
    but only the window is computed: crop pixel j samples the scaled image's
    pixel x = j + start, clamped to its extent (the padding repeats the
    *scaled* edge, a blend of the last source pixels when shrinking), at
    source position (x + 0.5)/f − 0.5.

    Args:
        image: (H, W, C) uint8; fx, fy: actual scale factors (scaled size /
            size); start: (x, y) of the window's corner in the scaled image.
    Returns:
        (size, size, C) uint8.
    """
    cv2 = require_opencv("training's crops and augmentation")

    height, width = image.shape[:2]
    new_w, new_h = max(round(width * fx), 1), max(round(height * fy), 1)
    x = np.clip(np.arange(size) + start[0], 0, new_w - 1)
    y = np.clip(np.arange(size) + start[1], 0, new_h - 1)
    map_x = np.broadcast_to(((x + 0.5) / fx - 0.5).astype(np.float32)[None, :], (size, size))
    map_y = np.broadcast_to(((y + 0.5) / fy - 0.5).astype(np.float32)[:, None], (size, size))
    return cv2.remap(image, np.ascontiguousarray(map_x), np.ascontiguousarray(map_y),
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def augment_sample(sample: dict[str, Any], rng: np.random.Generator,
                   config: AugmentConfig = AugmentConfig()) -> dict[str, Any]:
    """One stored sample → one network input with its labels (HMR_REFERENCE §10.4).

    Args:
        sample: a decoded sample (``openhmr.data.shards.decode_sample``):
            ``image`` (H, W, 3) uint8, ``keypoints2d`` (19, 3) pixels,
            ``center`` (2,), ``pose``, ``betas``, ``joints3d``, flags.
        rng: the sample's generator; draws, in order: translation (2 ints),
            scale (1), flip (1), then rotation (2), colour (3) and occlusion
            (6) only when enabled.
    Returns:
        ``image`` (3, S, S) float32 tensor in [−1, 1]; ``keypoints`` (19, 3)
        normalised (x, y, vis); ``pose`` (3·J,), ``betas`` (k,), ``joints3d``
        (14, 3) float32 tensors; ``has_smpl``, ``has_joints3d``, ``flipped``
        bools (``has_smpl`` False for a pose whose size is not the body's,
        3 · ``len(config.joint_flip)``); ``key``, ``dataset`` strings.
    """
    image = sample["image"]
    height, width = image.shape[:2]
    size = config.crop_size
    trans = rng.integers(-config.trans_max, config.trans_max, size=2) if config.trans_max > 0 \
        else np.zeros(2, np.int64)
    lo, hi = config.scale_range
    factor = rng.uniform(lo, hi) if hi > lo else lo
    flip = rng.uniform() < config.flip_prob

    # Steps 2-4: jitter the centre, scale with truncated sizes, crop at centre - size/2.
    center = np.asarray(sample["center"], np.float64) + trans
    new_w, new_h = max(int(width * factor), 1), max(int(height * factor), 1)
    fx, fy = new_w / width, new_h / height
    center_scaled = np.trunc(center * [fx, fy]).astype(int)
    start = center_scaled - size // 2
    crop = scaled_crop(image, fx, fy, (int(start[0]), int(start[1])), size)
    keypoints = np.asarray(sample["keypoints2d"], np.float64).copy()
    keypoints[:, :2] = keypoints[:, :2] * [fx, fy] - start
    has_smpl, has_j3d = bool(sample["has_smpl"]), bool(sample["has_joints3d"])
    pose = np.asarray(sample["pose"], np.float32).copy()
    if has_smpl and pose.size != 3 * len(config.joint_flip):
        # A pose label made for another body model (SMPL's 72 values for Anny's
        # 22 joints) cannot be reflected with this body's joints, and batches
        # drop it anyway: it is not a label for this body.
        has_smpl = False
    joints3d = np.asarray(sample["joints3d"], np.float32).copy()

    if config.rotation_max_deg > 0:
        do_rotate = rng.uniform() < config.rotation_prob
        angle = rng.uniform(-config.rotation_max_deg, config.rotation_max_deg)
        if do_rotate:
            crop, keypoints, rot_pose, rot_j3d = rotate_crop(
                crop, keypoints, pose if has_smpl else None, joints3d if has_j3d else None, angle)
            pose = rot_pose if rot_pose is not None else pose
            joints3d = rot_j3d if rot_j3d is not None else joints3d

    if flip:
        crop, keypoints, flip_pose, flip_j3d = flip_crop(
            crop, keypoints, pose if has_smpl else None, joints3d if has_j3d else None, config)
        pose = flip_pose if flip_pose is not None else pose
        joints3d = flip_j3d if flip_j3d is not None else joints3d

    # Channels first while still uint8 (a quarter of the bytes to move); every
    # operation below is elementwise, so the values are those of HWC float maths.
    import cv2  # scaled_crop has required it

    pixels = np.stack(cv2.split(crop)).astype(np.float32)  # cv2.split: ~3x numpy's strided uint8 transpose
    if config.color_jitter > 0:
        gains = rng.uniform(1.0 - config.color_jitter, 1.0 + config.color_jitter, size=3)
        pixels = np.clip(pixels * gains.astype(np.float32)[:, None, None], 0.0, 255.0)
    if config.occlusion_prob > 0:
        do_occlude = rng.uniform() < config.occlusion_prob
        sides = rng.uniform(*config.occlusion_size, size=2) * size
        corner = rng.uniform(0.0, 1.0, size=2) * (size - sides)
        grey = rng.uniform(0.0, 255.0)
        if do_occlude:
            x0, y0 = corner.astype(int)
            x1, y1 = (corner + sides).astype(int)
            pixels[:, y0:y1, x0:x1] = grey

    pixels *= np.float32(2.0 / 255.0)
    pixels -= np.float32(1.0)
    return {
        "image": torch.from_numpy(pixels),
        "keypoints": torch.from_numpy(normalize_keypoints(keypoints, size)),
        "pose": torch.from_numpy(np.asarray(pose, np.float32)),
        "betas": torch.from_numpy(np.asarray(sample["betas"], np.float32).copy()),
        "joints3d": torch.from_numpy(np.asarray(joints3d, np.float32)),
        "has_smpl": has_smpl,
        "has_joints3d": has_j3d,
        "flipped": bool(flip),
        "key": sample["key"],
        "dataset": sample["dataset"],
    }


class Augment:
    """``augment_sample`` as a dataset transform: ``Augment(config)(sample, rng)``."""

    def __init__(self, config: AugmentConfig = AugmentConfig()) -> None:
        self.config = config

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        return augment_sample(sample, rng, self.config)
