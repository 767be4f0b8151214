"""MPI-INF-3DHP (training subjects) → shards, as HMR's ``mpi_inf_3dhp_to_tfrecords``.

Reads under ROOT, for subjects S1–S7 (S8 is excluded, as the original) and
sequences Seq1, Seq2:

* ``S<s>/Seq<q>/annot.mat`` (MATLAB v5): ``annot2`` and ``annot3``, cells
  with one (frames, 28·2) / (frames, 28·3) array per camera: 2D pixels and 3D
  millimetres in that camera's frame;
* ``S<s>/Seq<q>/camera.calibration`` (the dataset's text format): per camera
  a ``name`` line, ``size W H`` and a 4×4 row-major ``intrinsic``;
* the frames of cameras 0, 1, 2, 4, 5, 6, 7, 8 as JPEGs
  ``S<s>/Seq<q>/imageFrames/video_<cam>/frame_%06d.jpg`` (frame f is file
  f + 1, as the dataset's extraction script names them). The dataset ships
  videos (``imageSequence/video_<cam>.avi``); where no extracted frames are
  found, the video is decoded instead.

Per camera sequence a frame is kept when some of the 14 LSP joints moved at
least 200 mm since the last frame kept for its motion (the first frame is
kept), and, of those, when at least 8 of the 14 joints project inside the
image (HMR's ``sample_frames``, then its ``check_good``). The 17 joints [8, 6, 15, 16, 17, 10, 11,
12, 24, 25, 26, 19, 20, 21, 5, 4, 7] − 1 of the 28 give the 14 LSP joints,
all marked visible; 3D in metres. Scale 150 / diagonal, crop ≤ 300×300 px;
the scaled, cropped intrinsics are stored as ``intrinsics`` (3, 3). The
whole set is shuffled before writing, as the original does (seed 0, so the
order is reproducible).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from openhmr.progress import Progress, message, progress_bar

from openhmr.data.datasets._common import (
    DatasetError, check_split, crop_intrinsics, diagonal_scale, load_mat, require,
    scale_and_crop_person, to_cocoplus, write_samples,
)
from openhmr.data.shards import Sample, check_writable
from openhmr.io.images import open_video, read_image

NAME = "mpi_inf_3dhp"
SUBJECTS = (1, 2, 3, 4, 5, 6, 7)
SEQUENCES = (1, 2)
CAMERAS = (0, 1, 2, 4, 5, 6, 7, 8)
PROGRESS_FRAMES = 500  # frames between two notes of where a camera's video is
# 1-based ids of the 28 joints giving, in order: head top, neck, R shoulder,
# R elbow, R wrist, L shoulder, L elbow, L wrist, R hip, R knee, R ankle,
# L hip, L knee, L ankle, pelvis, spine, head.
JOINT_IDS_17 = (8, 6, 15, 16, 17, 10, 11, 12, 24, 25, 26, 19, 20, 21, 5, 4, 7)
# Positions in that 17-joint list of the LSP-14 joints.
LSP_FROM_17 = (10, 9, 8, 11, 12, 13, 4, 3, 2, 5, 6, 7, 1, 0)
MOTION_MM = 200.0
MIN_INSIDE = 8
MARGIN = 150
SHUFFLE_SEED = 0


def parse_calibration(path: Path) -> dict[int, dict[str, np.ndarray]]:
    """``camera.calibration`` → camera index → {"size": (W, H), "K": (3, 3)}."""
    cameras: dict[int, dict[str, np.ndarray]] = {}
    current: int | None = None
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "name" and len(parts) >= 2:
            current = int(parts[1])
            cameras[current] = {}
        elif current is not None and parts[0] == "size" and len(parts) >= 3:
            cameras[current]["size"] = np.array([float(parts[1]), float(parts[2])])
        elif current is not None and parts[0] == "intrinsic" and len(parts) >= 17:
            cameras[current]["K"] = np.array(parts[1:17], np.float64).reshape(4, 4)[:3, :3]
    return cameras


def lsp_from_28(points: np.ndarray) -> np.ndarray:
    """(..., 28, C) MPI-INF-3DHP joints → (..., 14, C) LSP order."""
    j17 = points[..., [i - 1 for i in JOINT_IDS_17], :]
    return j17[..., list(LSP_FROM_17), :]


def _frames(seq_dir: Path, cam: int) -> Iterator[np.ndarray] | None:
    frame_dir = seq_dir / "imageFrames" / f"video_{cam}"
    if frame_dir.is_dir():
        def read() -> Iterator[np.ndarray]:
            f = 0
            while True:
                path = frame_dir / f"frame_{f + 1:06d}.jpg"
                if not path.is_file():
                    return
                yield read_image(path, upright=False)
                f += 1
        return read()
    video = seq_dir / "imageSequence" / f"video_{cam}.avi"
    if video.is_file():
        return open_video(video)[1]
    return None


def select_frames(joints3d: np.ndarray, joints2d: np.ndarray, size: np.ndarray) -> list[int]:
    """HMR's frame filter for one camera sequence, as its ``sample_frames``
    and ``check_good``: first by motion alone — frame 0, then each frame where
    some of the 14 LSP joints moved at least :data:`MOTION_MM` since the last
    frame so kept — then, of those, the frames with at least
    :data:`MIN_INSIDE` of the 14 joints inside the image (a frame dropped
    there still moved the motion reference).

    Args:
        joints3d: (T, 14, 3) LSP joints, millimetres; joints2d: (T, 14, 2)
            pixels; size: (W, H) image size.
    """
    moved: list[int] = []
    last: np.ndarray | None = None
    for t in range(len(joints3d)):
        if last is not None and np.linalg.norm(joints3d[t] - last, axis=1).max() < MOTION_MM:
            continue
        moved.append(t)
        last = joints3d[t]
    return [t for t in moved
            if ((joints2d[t] >= 0) & (joints2d[t] < size)).all(axis=1).sum() >= MIN_INSIDE]


def sequence_samples(root: Path, subject: int, seq: int, bar: Progress | None = None) -> Iterator[Sample]:
    """One sequence's samples, camera after camera; ``bar`` counts the cameras
    (a camera's video takes minutes to decode) and names where it is."""
    seq_dir = root / f"S{subject}" / f"Seq{seq}"
    annot = load_mat(require(seq_dir / "annot.mat", f"S{subject}/Seq{seq}/annot.mat"))
    calib = parse_calibration(require(seq_dir / "camera.calibration",
                                      f"S{subject}/Seq{seq}/camera.calibration"))
    try:
        annot2 = np.asarray(annot["annot2"], dtype=object).ravel()
        annot3 = np.asarray(annot["annot3"], dtype=object).ravel()
    except KeyError as e:
        raise DatasetError(f"{seq_dir / 'annot.mat'} lacks {e}") from None
    for cam in CAMERAS:
        if cam >= len(annot2) or cam not in calib or "K" not in calib[cam]:
            raise DatasetError(f"{seq_dir}: camera {cam} is missing from annot.mat or camera.calibration")
        j2 = np.asarray(annot2[cam], np.float64).reshape(-1, 28, 2)
        j3 = np.asarray(annot3[cam], np.float64).reshape(-1, 28, 3)
        frames = _frames(seq_dir, cam)
        if frames is None:
            raise DatasetError(f"{seq_dir}: no frames for camera {cam} (expected "
                               f"imageFrames/video_{cam}/frame_000001.jpg... or imageSequence/video_{cam}.avi)")
        lsp2 = lsp_from_28(j2)
        size = calib[cam].get("size")
        kept = set(select_frames(lsp_from_28(j3), lsp2, size if size is not None else np.array([np.inf, np.inf])))
        last, read = (max(kept) if kept else -1), 0
        for t, image in enumerate(frames):
            if t > last:
                break
            read = t + 1
            if bar is not None and t % PROGRESS_FRAMES == 0:
                bar.set_postfix_str(f"S{subject}/Seq{seq} camera {cam}, frame {t}")
            if t not in kept:
                continue
            kp = np.concatenate([lsp2[t], np.ones((14, 1))], axis=1)
            scale = diagonal_scale(kp)
            if scale is None:
                continue
            crop, kp_c, center, offset, factors = scale_and_crop_person(
                image, to_cocoplus(kp), scale, MARGIN)
            yield Sample(
                key=f"3dhp_S{subject}_Seq{seq}_cam{cam}_{t:06d}", image=crop, keypoints2d=kp_c,
                center=center, dataset=NAME, joints3d=lsp_from_28(j3[t]) / 1000.0,
                extras={"intrinsics": crop_intrinsics(calib[cam]["K"], factors, offset).astype(np.float32),
                        "source": np.array(f"S{subject}/Seq{seq}/video_{cam}/{t:06d}")})
        if read <= last:  # a video or frame folder cut short: said, not silently fewer samples
            left_out = sum(t >= read for t in kept)
            message(f"convert 3dhp: warning: S{subject}/Seq{seq} camera {cam}: its frames end after {read} of "
                    f"the {len(j2)} annotated; {left_out} selected frame(s) are left out")
        if bar is not None:
            bar.update(1)


def convert(root: str | Path, out: str | Path, split: str = "train", overwrite: bool = False,
            subjects: tuple[int, ...] = SUBJECTS, **_: Any) -> dict[str, Any]:
    """Convert MPI-INF-3DHP's training subjects under ``root`` into shards in ``out``."""
    root = Path(root)
    check_split("MPI-INF-3DHP", split, ("train",))
    check_writable(Path(out), NAME, overwrite=overwrite)  # before reading the inputs
    require(root, "the MPI-INF-3DHP folder (S1/Seq1/annot.mat, ...)")
    sequences = [(s, q) for s in subjects for q in SEQUENCES
                 if (root / f"S{s}" / f"Seq{q}" / "annot.mat").is_file()]
    if not sequences:
        raise DatasetError(f"no MPI-INF-3DHP sequence under {root}: expected S1/Seq1/annot.mat ...")

    def samples() -> Iterator[Sample]:
        with progress_bar(len(sequences) * len(CAMERAS), "convert mpi_inf_3dhp", "video") as bar:
            for subject, seq in sequences:
                yield from sequence_samples(root, subject, seq, bar)

    options = {"split": split, "root": str(root), "cameras": list(CAMERAS),
               "sequences": [f"S{s}/Seq{q}" for s, q in sequences], "margin": MARGIN,
               "shuffle_seed": SHUFFLE_SEED}
    return write_samples(samples(), Path(out), NAME, options, overwrite, shuffle_seed=SHUFFLE_SEED)
