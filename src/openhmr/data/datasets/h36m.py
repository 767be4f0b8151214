"""Human3.6M (the owners' distributed release) → shards with 2D and 3D labels.

HMR trained on Human3.6M tfrecords that were distributed pre-made; their
conversion script was never released (HMR_REFERENCE §10.1, §15), so the
choices below are openhmr's, stated here:

* **Files** under ROOT, per subject: ``S1/Videos/<Action>[ n].<camera>.mp4``,
  ``S1/MyPoseFeatures/D2_Positions/<same>.cdf`` (32 joints × (x, y) image
  pixels) and ``S1/MyPoseFeatures/D3_Positions_mono/<same>.cdf`` (32 joints ×
  (x, y, z) millimetres in that camera's frame), read with
  ``openhmr.io.cdf``. Sequences whose name is not one of the 15 actions
  (e.g. ``_ALL``) are skipped.
* **Subjects**: train S1, S5, S6, S7, S8; test S9, S11 (the mocap prior's
  Human3.6M part also excludes S9 and S11).
* **Frames**: every 5th frame (``--stride``) of the 50 fps videos, all four
  cameras. Over the training subjects this gives ~312k frames, the count of
  the original's training records (312,188), which suggests the same stride.
* **Joints**: the 14 LSP joints through the 17-joint subset of the 32
  (``openhmr.evaluate.h36m.h36m32_to_lsp14``: thorax = neck, head = head top),
  all visible; 3D in metres in the camera frame (x right, y down, z forward,
  like HMR's predictions). The five face keypoints are unlabelled.
* **Scale**: 150 / visible-box diagonal and a crop of at most 300×300 px,
  as the original's MPI-INF-3DHP conversion.
* **Order**: the whole set is stored shuffled (seed 0), as the original's
  MPI-INF-3DHP conversion stores its set; the frames of one video would
  otherwise fill whole shards, and the training reader's shuffle (shards,
  then a 2000-sample buffer) would leave each batch a few stretches of
  consecutive frames.
* **SMPL**: MoSh fits are not part of the public release, so
  ``has_smpl = False`` unless ``smpl_fits`` names an ``.npz`` with ``keys``
  (N,) strings ``"S1/Directions 1.54138969/000005"`` (subject, file stem,
  0-based frame), ``pose`` (N, 72) axis-angle with the root in that camera's
  frame, and ``betas`` (N, 10).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from openhmr.progress import message, track

from openhmr.data.datasets._common import (
    DatasetError, check_split, diagonal_scale, require, scale_and_crop_person, to_cocoplus,
    write_samples,
)
from openhmr.data.shards import Sample, check_writable, safe_key
from openhmr.errors import NPZ_READ_ERRORS
from openhmr.evaluate.h36m import canonical_action, h36m32_to_lsp14, read_poses
from openhmr.io.images import open_video
from openhmr.io.npz import check_fits_memory, open_npz

NAME = "h36m"
SUBJECTS = {"train": (1, 5, 6, 7, 8), "test": (9, 11)}
DEFAULT_STRIDE = 5
SHUFFLE_SEED = 0
MARGIN = 150


def find_sequences(root: Path, subject: int) -> list[str]:
    """File stems ``<Action>[ n].<camera>`` with a video and both pose files."""
    base = root / f"S{subject}"
    d3 = base / "MyPoseFeatures" / "D3_Positions_mono"
    stems = []
    for path in sorted(d3.glob("*.cdf")):
        stem = path.stem
        action = stem.rpartition(".")[0]
        if canonical_action(action) is None:
            continue
        if (base / "MyPoseFeatures" / "D2_Positions" / f"{stem}.cdf").is_file() and \
                (base / "Videos" / f"{stem}.mp4").is_file():
            stems.append(stem)
    return stems


def load_smpl_fits(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A user's SMPL fits npz (module docstring) → key → (pose (72,), betas (10,))."""
    try:
        with open_npz(require(path, "an .npz of SMPL fits (keys, pose, betas)")) as f:
            missing = [name for name in ("keys", "pose", "betas") if name not in f.files]
            if missing:
                raise DatasetError(f"{path} lacks the array {missing[0]!r}; expected keys, pose (N, 72), "
                                   "betas (N, 10)")
            check_fits_memory(f, ("keys", "pose", "betas"))
            keys, pose, betas = f["keys"], f["pose"], f["betas"]
    except NPZ_READ_ERRORS as e:
        raise DatasetError(f"cannot read {path}: {e or type(e).__name__}") from None
    if pose.shape != (len(keys), 72) or betas.ndim != 2 or betas.shape[1] < 10 or len(betas) != len(keys):
        raise DatasetError(f"{path}: expected pose (N, 72) and betas (N, 10) for N = {len(keys)} keys")
    for name, values in (("pose", pose), ("betas", betas[:, :10])):
        # a failed fit stored as NaN would be a labelled target, and its loss NaN weights in training
        bad = ~np.isfinite(np.asarray(values, np.float64)).all(axis=1)
        if bad.any():
            raise DatasetError(f"{path}: {name} holds NaN or infinite values for {int(bad.sum())} key(s), "
                               f"the first {_key_text(keys[int(np.flatnonzero(bad)[0])])!r}; leave those frames out")
    return {_key_text(k): (pose[i], betas[i, :10]) for i, k in enumerate(keys)}


def _key_text(key: object) -> str:
    """A key as text: bytes (as h5py and Python 2 tools store strings) decoded."""
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)


def sequence_samples(root: Path, subject: int, stem: str, stride: int,
                     fits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Iterator[Sample]:
    base = root / f"S{subject}"
    poses3d = read_poses(base / "MyPoseFeatures" / "D3_Positions_mono" / f"{stem}.cdf", 3)
    poses2d = read_poses(base / "MyPoseFeatures" / "D2_Positions" / f"{stem}.cdf", 2)
    if poses3d.shape[1] != 32 or poses2d.shape[1] != 32:
        raise DatasetError(f"S{subject} {stem}: expected 32 joints per frame")
    count = min(len(poses3d), len(poses2d))
    _, frames = open_video(base / "Videos" / f"{stem}.mp4")
    read = 0
    for f, image in enumerate(frames):
        if f >= count:
            break
        read = f + 1
        if f % stride:
            continue
        kp = np.concatenate([h36m32_to_lsp14(poses2d[f]), np.ones((14, 1))], axis=1)
        scale = diagonal_scale(kp)
        if scale is None:
            continue
        crop, kp_c, center, _, _ = scale_and_crop_person(image, to_cocoplus(kp), scale, MARGIN)
        key = f"S{subject}/{stem}/{f:06d}"
        pose, betas = fits.get(key, (None, None))
        yield Sample(key=safe_key(f"h36m_{key}"), image=crop, keypoints2d=kp_c, center=center,
                     dataset=NAME, joints3d=h36m32_to_lsp14(poses3d[f]) / 1000.0,
                     pose=pose, betas=betas, extras={"source": np.array(key)})
    if read < count:  # a download cut short: said, not silently fewer samples
        message(f"convert h36m: warning: S{subject} {stem}: its video ends after {read} of the {count} frames "
                "its poses annotate; the rest is left out")


def convert(root: str | Path, out: str | Path, split: str = "train", overwrite: bool = False,
            stride: int = DEFAULT_STRIDE, smpl_fits: str | Path | None = None,
            **_: Any) -> dict[str, Any]:
    """Convert the Human3.6M release under ``root`` into shards in ``out``."""
    root = Path(root)
    check_split("Human3.6M", split, ("train", "test"))
    check_writable(Path(out), NAME, overwrite=overwrite)  # before reading the inputs
    if stride < 1:
        raise DatasetError(f"--stride must be at least 1, got {stride}")
    require(root, "the Human3.6M release folder (S1/, S5/, ...)")
    sequences = [(s, stem) for s in SUBJECTS[split] for stem in find_sequences(root, s)]
    if not sequences:
        raise DatasetError(f"no Human3.6M sequence under {root}: expected S1/Videos/<Action>.<camera>.mp4 "
                           "with MyPoseFeatures/D2_Positions and D3_Positions_mono .cdf files")
    fits = load_smpl_fits(Path(smpl_fits)) if smpl_fits else {}
    if fits:
        # keys name a camera's video frame: S<s>/<Action>.<camera>/<frame, 6 digits>
        fitted = {key.rsplit("/", 1)[0] for key in fits if re.fullmatch(r".+/\d{6}", key)}
        if not any(f"S{subject}/{stem}" in fitted for subject, stem in sequences):
            first = next(iter(fits))
            raise DatasetError(f"no key of {smpl_fits} names a frame of these sequences (its first: {first!r}; "
                               f"expected e.g. 'S{sequences[0][0]}/{sequences[0][1]}/000000')")
    labelled = [0, 0]  # frames with a fit, frames

    def samples() -> Iterator[Sample]:
        for subject, stem in track(sequences, desc="convert h36m", unit="seq"):
            for sample in sequence_samples(root, subject, stem, stride, fits):
                labelled[0] += sample.pose is not None
                labelled[1] += 1
                yield sample

    options = {"split": split, "root": str(root), "stride": stride, "margin": MARGIN,
               "smpl_fits": str(smpl_fits) if smpl_fits else None, "shuffle_seed": SHUFFLE_SEED}
    manifest = write_samples(samples(), Path(out), NAME, options, overwrite, shuffle_seed=SHUFFLE_SEED)
    if fits:
        message(f"convert h36m: {labelled[0]} of {labelled[1]} frames have an SMPL fit from {smpl_fits}")
    return manifest
