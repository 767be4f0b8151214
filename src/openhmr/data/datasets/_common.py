"""What the dataset converters share: HMR's person scale rules, its scale-and-crop, and the write loop.

HMR's conversion scripts (HMR_REFERENCE §10.3) scale every image so that the
person is about 150 px tall, measured as the diagonal of the box around the
visible keypoints, then keep a window of at most 2·margin pixels around the
person's centre (no padding: the window is clipped to the image). The
original scales x by the height factor and y by the width factor (Q16, a
sub-pixel error); here each axis uses its own factor.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from openhmr.data.shards import (
    SAMPLES_PER_SHARD, Sample, ShardWriter, _collect_shards, _ShardIndex, read_manifest,
)
from openhmr.errors import InputError, require_opencv
from openhmr.progress import track

PERSON_SIZE_PX = 150.0
# LSP-14 indices used by the scale rules.
ANKLES = (0, 5)
HIPS = (2, 3)
SHOULDER_HIP_PAIRS = ((8, 2), (9, 3))
HEAD_TOP = 13


class DatasetError(InputError):
    """A dataset root is missing files or holds something unexpected."""


def require(path: Path, what: str) -> Path:
    """``path`` if it exists, else a one-line ``DatasetError`` naming ``what``."""
    if not path.exists():
        raise DatasetError(f"{path} not found: expected {what}")
    return path


def load_mat(path: Path, **kwargs: Any) -> dict[str, Any]:
    """Read a MATLAB v5 .mat file with scipy (imported lazily)."""
    try:
        import scipy.io
        from scipy.io.matlab import MatReadError
    except ImportError:
        raise DatasetError(f"reading {path.name} needs scipy (pip install scipy)") from None
    try:
        return scipy.io.loadmat(str(path), **kwargs)
    except NotImplementedError:
        raise DatasetError(f"{path} is a MATLAB v7.3 (HDF5) file; expected the dataset's v5 .mat") from None
    # A file cut inside its 128-byte header fails in scipy's parser with IndexError or TypeError.
    except (ValueError, OSError, TypeError, IndexError, MatReadError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from None


def visible_box(keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(min, max) corners of the visible keypoints' box, or None if none is visible."""
    vis = keypoints[:, 2] > 0
    if not vis.any():
        return None
    pts = keypoints[vis, :2]
    return pts.min(axis=0), pts.max(axis=0)


def visible_midpoint(keypoints: np.ndarray) -> np.ndarray | None:
    """Midpoint (2,) of the visible keypoints' box, pixels, or None."""
    box = visible_box(keypoints)
    return None if box is None else (box[0] + box[1]) / 2.0


def visible_center(keypoints: np.ndarray) -> np.ndarray | None:
    """The stored centre of an unscaled image (LSP, LSP-extended): the visible
    box's midpoint truncated to whole pixels, as the original's
    ``center.astype(np.int)`` stores it."""
    mid = visible_midpoint(keypoints)
    return None if mid is None else np.trunc(mid)


def visible_diagonal(keypoints: np.ndarray) -> float:
    box = visible_box(keypoints)
    return 0.0 if box is None else float(np.linalg.norm(box[1] - box[0]))


def _mean_distance(keypoints: np.ndarray, pairs: Iterable[tuple[int, int]]) -> float | None:
    dists = [np.linalg.norm(keypoints[a, :2] - keypoints[b, :2]) for a, b in pairs
             if keypoints[a, 2] > 0 and keypoints[b, 2] > 0]
    return float(np.mean(dists)) if dists else None


def _ratio(size: float, length: float | None) -> float | None:
    return size / length if length is not None and length > 0 else None


def mpii_scale(keypoints: np.ndarray) -> float | None:
    """HMR's MPII person scale (LSP-order keypoints), or None to skip the person.

    An ankle visible: 150 / visible-box diagonal. Else head top and a hip:
    75 / mean head-top–hip distance (the original's comment says shoulders,
    its code uses the head top: Q17, reproduced). Else shoulder–hip pairs:
    56 / mean shoulder–hip distance. Else None.
    """
    if (keypoints[list(ANKLES), 2] > 0).any():
        return _ratio(PERSON_SIZE_PX, visible_diagonal(keypoints))
    if keypoints[HEAD_TOP, 2] > 0 and (keypoints[list(HIPS), 2] > 0).any():
        return _ratio(75.0, _mean_distance(keypoints, [(HEAD_TOP, h) for h in HIPS]))
    torso = _mean_distance(keypoints, SHOULDER_HIP_PAIRS)
    return _ratio(56.0, torso)


def coco_scale(keypoints: np.ndarray) -> float | None:
    """HMR's COCO person scale: 150/diagonal with an ankle visible, else
    75 / mean shoulder–hip length, else 50 / diagonal."""
    if (keypoints[list(ANKLES), 2] > 0).any():
        return _ratio(PERSON_SIZE_PX, visible_diagonal(keypoints))
    torso = _mean_distance(keypoints, SHOULDER_HIP_PAIRS)
    if torso is not None:
        return _ratio(75.0, torso)
    return _ratio(50.0, visible_diagonal(keypoints))


def diagonal_scale(keypoints: np.ndarray) -> float | None:
    """150 / visible-box diagonal (MPI-INF-3DHP, Human3.6M, 3DPW)."""
    return _ratio(PERSON_SIZE_PX, visible_diagonal(keypoints))


#: Above this many pixels the scaled image is not made whole (see scale_and_crop_person).
MAX_SCALED_PIXELS = 64_000_000


def scale_and_crop_person(image: np.ndarray, keypoints: np.ndarray, scale: float, margin: int,
                          center: np.ndarray | None = None, truncate: bool = False
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The original's ``resize_img`` + crop of at most (2·margin)² around the person.

    Args:
        image: (H, W, 3) uint8.
        keypoints: (K, 3) x, y in image pixels, visibility.
        scale: requested scale; the image becomes floor(H·s) × floor(W·s)
            (bilinear ``cv2.resize``), the keypoints use the actual factors.
            Beyond ``MAX_SCALED_PIXELS`` only the kept window is interpolated
            (``cv2.warpAffine``, the same mapping; values within a grey level
            or two of the whole image's, whose fixed-point weights differ).
        margin: half-size of the kept window, pixels of the scaled image.
        center: person centre in image pixels (default: the visible box's
            midpoint, unrounded).
        truncate: the original's MPII and COCO crop: the scaled centre c
            kept fractional, the window from ⌊c − margin⌋ to ⌊c + margin⌋
            and the stored centre ⌊c − start⌋; otherwise its MPI-INF-3DHP
            crop: c rounded once, after scaling, the window c ± margin.
    Returns:
        (cropped image, keypoints (K, 3) in its pixels, centre (2,) integer
        pixels, offset (2,) the scaled-image pixel of the crop's top-left
        corner, factors (2,) the actual (fx, fy)); a source point maps to
        x·factors − offset.
    """
    cv2 = require_opencv("the dataset conversion")

    height, width = image.shape[:2]
    new_h, new_w = (int(np.floor(height * scale)), int(np.floor(width * scale)))
    if new_h < 1 or new_w < 1:
        raise ValueError(f"scale {scale} shrinks the image to nothing")
    factors = np.array([new_w / width, new_h / height])
    if center is None:
        center = visible_midpoint(keypoints)
    scaled_center = np.asarray(center, np.float64) * factors
    if truncate:
        start = np.maximum(scaled_center - margin, 0).astype(int)
        end = np.minimum((scaled_center + margin).astype(int), [new_w, new_h])
        stored = np.trunc(scaled_center - start)
    else:
        rounded = np.round(scaled_center).astype(int)
        start = np.maximum(rounded - margin, 0)
        end = np.minimum(rounded + margin, [new_w, new_h])
        stored = (rounded - start).astype(np.float64)
    if new_h * new_w <= MAX_SCALED_PIXELS:
        scaled = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        crop = np.ascontiguousarray(scaled[start[1]:end[1], start[0]:end[0]])
    else:
        # A person seen by a few close keypoints asks for a huge enlargement
        # (a 2-px hip pair: 75×, 35 GB for a 1080p frame); only the kept window
        # is interpolated, at cv2.resize's pixel mapping x_src = (x + ½)/f − ½.
        size = np.maximum(end - start, 0)
        if size.min() == 0:
            crop = np.zeros((size[1], size[0]) + image.shape[2:], image.dtype)
        else:
            inverse = 1.0 / factors
            warp = np.array([[inverse[0], 0.0, (start[0] + 0.5) * inverse[0] - 0.5],
                             [0.0, inverse[1], (start[1] + 0.5) * inverse[1] - 0.5]])
            crop = cv2.warpAffine(image, warp, (int(size[0]), int(size[1])),
                                  flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    kp = np.asarray(keypoints, np.float64).copy()
    kp[:, :2] = kp[:, :2] * factors - start
    return crop, kp, stored, start, factors


def crop_intrinsics(intrinsics: np.ndarray, factors: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """A pinhole K (3, 3) of the source image → K of the scaled, cropped image."""
    k = np.asarray(intrinsics, np.float64).copy()
    k[0, :] *= factors[0]
    k[1, :] *= factors[1]
    k[0, 2] -= offset[0]
    k[1, 2] -= offset[1]
    return k


def to_cocoplus(lsp14: np.ndarray, face5: np.ndarray | None = None) -> np.ndarray:
    """(14, 3) LSP keypoints (+ optional (5, 3) COCO face points) → (19, 3) cocoplus."""
    out = np.zeros((19, 3), np.float64)
    out[:14] = lsp14
    if face5 is not None:
        out[14:] = face5
    return out


def write_samples(samples: Iterator[Sample], out_dir: Path, name: str, options: dict[str, Any],
                  overwrite: bool, samples_per_shard: int = SAMPLES_PER_SHARD,
                  shuffle_seed: int | None = None) -> dict[str, Any]:
    """Write a converter's samples as shards; returns the manifest.

    The output is checked again here; each converter checks it first with
    :func:`openhmr.data.shards.check_writable`, before it reads its inputs,
    so an existing output fails fast without --overwrite.

    With ``shuffle_seed``, the whole set is stored in the order
    ``default_rng(shuffle_seed).permutation(count)`` of the samples as they
    come (HMR's MPI-INF-3DHP conversion shuffles before writing). Video
    frames come in sequence order, and the training reader's shuffle (whole
    shards, then a 2000-sample buffer) would leave each batch drawing from a
    few stretches of consecutive frames. The samples are first written in
    their own order to a hidden folder inside ``out_dir`` (as much disk
    again, for the time of the conversion), then copied byte for byte.
    """
    with contextlib.ExitStack() as stack:
        if hasattr(samples, "close"):
            # A converter's generator holds its progress bar: closed at once on an
            # error, the bar ends before the error is said (not drawn again after it).
            stack.callback(samples.close)
        writer = stack.enter_context(ShardWriter(out_dir, name, dataset=name, options=options,
                                                 samples_per_shard=samples_per_shard, overwrite=overwrite))
        if shuffle_seed is None:
            for sample in samples:
                writer.write(sample)
        else:
            _write_shuffled(samples, writer, shuffle_seed)
        if writer.count == 0:
            # A wrong folder, split or annotation file: an error, and the
            # writer's abort keeps any earlier output as it was.
            raise DatasetError(f"no {name} sample was found to convert; nothing was written")
    return read_manifest(out_dir)


def _write_shuffled(samples: Iterator[Sample], writer: ShardWriter, seed: int) -> None:
    """Write ``samples`` through ``writer`` in a seeded permutation (see ``write_samples``)."""
    with tempfile.TemporaryDirectory(prefix=".in-order-", dir=writer.out_dir) as folder:
        with ShardWriter(folder, writer.name, dataset=writer.dataset,
                         samples_per_shard=writer.samples_per_shard) as in_order:
            for sample in samples:
                in_order.write(sample)
            count = in_order.count
        if count == 0:
            return
        index = _ShardIndex(_collect_shards(folder))
        try:
            per_shard = writer.samples_per_shard
            for i in track(np.random.default_rng(seed).permutation(count),
                           desc=f"shuffle {writer.name}", unit="sample"):
                key, members = index.read_raw(int(i) // per_shard, int(i) % per_shard)
                writer.write_encoded(key, members)
        finally:
            index.close()


def check_split(dataset: str, split: str, available: tuple[str, ...]) -> None:
    if split not in available:
        raise DatasetError(f"{dataset} conversion supports --split {' or '.join(available)}, got {split!r}")
