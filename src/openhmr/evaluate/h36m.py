"""Human3.6M protocols 1 and 2, as HMR's ``evaluate_h36m.py`` runs them.

Expected layout (as distributed by the Human3.6M owners, one folder per
subject; only S9 and S11 are read)::

    DIR/S9/MyPoseFeatures/D3_Positions_mono/<Action>[ <n>].<camera>.cdf
    DIR/S9/MyPoseFeatures/D2_Positions/<Action>[ <n>].<camera>.cdf   (network runs only)
    DIR/S9/Videos/<Action>[ <n>].<camera>.mp4                        (network runs only)
    DIR/S11/...

with cameras 54138969, 55011271, 58860488, 60457274 (camera indices 0–3 in
that order). Each D3_Positions_mono file holds one variable, ``Pose``: one
record of (frames, 96) float64, 32 joints × (x, y, z), millimetres, in that
camera's frame. The file names spell the actions as the capture did
("Photo"/"TakingPhoto", "WalkDog"/"WalkingDog", "Directions 1" and
"Directions" for the two trials, ...).

Protocol (HMR_REFERENCE §12):

* Subjects 9 and 11; 15 actions.
* **Trials.** An action's two recordings are its two file names (whatever
  their number suffix) in file-name order: trial 0 is the first, trial 1 the
  second ("Directions 1.54138969.cdf" before "Directions.54138969.cdf",
  since ' ' sorts before '.').
  With this rule the original's excluded sequence, (S11, Directions, trial
  1, camera 0), is S11's ``Directions.54138969``, the video known to be
  corrupt.
* **P1**: trials {0, 1} × cameras {0, 1, 2, 3}, minus that sequence: 239
  sequences. **P2**: trial 0, camera 3 (60457274) only: 30 sequences. The
  original's ``--protocol`` help text says "trial 1" for P2; its code uses
  index 0, which is what is done here (HMR_REFERENCE Q22).
* **Frames.** The original's frame subsampling is unknown (it is whatever its
  withdrawn test tfrecords held). The default here is the field's usual one
  (SPIN and HMR-era works): every 5th frame of the 50 fps capture, starting
  at frame 0, i.e. 10 fps; ``frame_step`` changes it.
* **Joints.** The 14 LSP joints are taken from the 32 H36M joints through the
  usual 17-joint subset (indices :data:`H36M17_FROM_32`) and the name map
  h36m17 → lsp14 (thorax = neck, head = head top).
* **Metrics** (runner): MPJPE after aligning the hip midpoints, PA-MPJPE; per
  sequence, per action (mean of the action's sequence means), the mean over
  actions (the headline number), and all frames pooled (mean and median).

Frame keys: ``S9/Directions 1.54138969/000005`` = subject folder, file stem,
0-based frame index (six digits).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from openhmr.progress import message, track

from openhmr.body.keypoints import index_map
from openhmr.evaluate.benchmark import Benchmark, DatasetError, ImageRef
from openhmr.io.cdf import read_cdf_variable

SUBJECTS = (9, 11)
CAMERAS = ("54138969", "55011271", "58860488", "60457274")
# HMR's action list (its spelling 'WakingDog' corrected), in HMR's table order.
ACTIONS = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "TakingPhoto", "Posing",
    "Purchases", "Sitting", "SittingDown", "Smoking", "Waiting", "WalkingDog", "Walking",
    "WalkTogether",
)
# File-name spellings of the actions that differ from the canonical names.
ACTION_ALIASES = {"Photo": "TakingPhoto", "WalkDog": "WalkingDog", "WakingDog": "WalkingDog"}
# The sequence the original skips: (subject, action, trial, camera index).
EXCLUDED = {(11, "Directions", 1, 0)}
# Indices of the H36M-17 joints (openhmr's h36m17 order) in the 32-joint skeleton.
H36M17_FROM_32 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
DEFAULT_FRAME_STEP = 5
PROTOCOLS = {"h36m-p1": 1, "h36m-p2": 2}


def canonical_action(stem_action: str) -> str | None:
    """'Directions 1' → 'Directions', 'Photo' → 'TakingPhoto'; None if not an action."""
    base = re.sub(r"\s+\d+$", "", stem_action.strip())
    base = ACTION_ALIASES.get(base, base)
    return base if base in ACTIONS else None


def h36m32_to_lsp14(points: np.ndarray) -> np.ndarray:
    """(..., 32, C) Human3.6M joints → (..., 14, C) LSP-14 joints."""
    src, dst = index_map("h36m17", "lsp14")
    h17 = points[..., list(H36M17_FROM_32), :]
    out = np.zeros((*points.shape[:-2], 14, points.shape[-1]), dtype=points.dtype)
    out[..., list(dst), :] = h17[..., list(src), :]
    return out


def find_sequences(data_dir: Path, subject: int, lone: list[str] | None = None) -> dict[tuple[str, int, int], str]:
    """(action, trial, camera index) → file stem, from a subject's D3_Positions_mono files.

    An action's trials are told apart by the order of its two names: one whose
    files carry a single name has no trial number (its other trial could sort
    before or after it), and is appended to ``lone`` instead."""
    folder = data_dir / f"S{subject}" / "MyPoseFeatures" / "D3_Positions_mono"
    if not folder.is_dir():
        return {}
    trials: dict[str, set[str]] = {}
    for path in folder.glob("*.cdf"):
        name, _, camera = path.stem.rpartition(".")
        action = canonical_action(name)
        if action is None or camera not in CAMERAS:
            continue
        trials.setdefault(action, set()).add(name)
    found: dict[tuple[str, int, int], str] = {}
    for action, names in trials.items():
        if len(names) == 1:
            if lone is not None:
                lone.append(f"S{subject} {next(iter(names))}")
            continue
        # Sorted as file names ("Directions 1.54138969" < "Directions.54138969").
        for trial, name in enumerate(sorted(names, key=lambda n: n + ".")[:2]):
            for cam_index, camera in enumerate(CAMERAS):
                if (folder / f"{name}.{camera}.cdf").is_file():
                    found[(action, trial, cam_index)] = f"{name}.{camera}"
    return found


def protocol_sequences(protocol: int) -> list[tuple[int, str, int, int]]:
    """The (subject, action, trial, camera index) of a protocol, in evaluation order."""
    trials: tuple[int, ...]
    cams: tuple[int, ...]
    if protocol == 1:
        trials, cams = (0, 1), (0, 1, 2, 3)
    elif protocol == 2:
        trials, cams = (0,), (3,)
    else:
        raise ValueError(f"Human3.6M protocol must be 1 or 2, got {protocol}")
    return [
        (s, a, t, c)
        for s in SUBJECTS for a in ACTIONS for t in trials for c in cams
        if (s, a, t, c) not in EXCLUDED
    ]


def read_poses(path: Path, channels: int) -> np.ndarray:
    """(frames, J, channels) from a Human3.6M pose CDF (variable ``Pose``)."""
    pose = read_cdf_variable(path, "Pose")
    pose = pose.reshape(-1, pose.shape[-1]) if pose.ndim == 3 else pose
    if pose.ndim != 2 or pose.shape[0] == 0 or pose.shape[1] == 0:
        raise DatasetError(f"{path}: 'Pose' holds no frame (its shape is {pose.shape})")
    if pose.shape[-1] % channels:
        raise DatasetError(f"{path}: 'Pose' has {pose.shape[-1]} values per frame, "
                           f"not a multiple of {channels}")
    return pose.reshape(pose.shape[0], -1, channels).astype(np.float64)


def load(
    data_dir: str | Path,
    protocol: int = 1,
    frame_step: int = DEFAULT_FRAME_STEP,
    allow_partial: bool = False,
) -> Benchmark:
    """Read the Human3.6M test sequences of protocol 1 or 2.

    Args:
        data_dir: folder holding S9/ and S11/ (layout in the module docstring).
        protocol: 1 or 2.
        frame_step: keep frames 0, step, 2·step, ... (5: 50 → 10 fps).
        allow_partial: score the sequences that are present instead of
            refusing when some are missing (for subsets and tests).
    Raises:
        DatasetError: files missing (unless ``allow_partial``) or malformed.
    """
    data_dir = Path(data_dir)
    if frame_step < 1:
        raise DatasetError(f"the frame step must be at least 1, got {frame_step}")
    if not data_dir.is_dir():
        raise DatasetError(f"Human3.6M folder not found: {data_dir}")
    wanted = protocol_sequences(protocol)
    lone: list[str] = []
    available = {s: find_sequences(data_dir, s, lone) for s in SUBJECTS}
    if lone:
        said = f"{', '.join(lone[:3])}{', …' if len(lone) > 3 else ''}"
        if not allow_partial:
            raise DatasetError(
                f"{len(lone)} action(s) have the files of one trial only ({said}): which trial it is "
                "cannot be told without the other's name; pass --allow-partial to score without them")
        message(f"openhmr eval: warning: left out {len(lone)} action(s) whose files have one trial's name "
                f"only, which trial it is unknown ({said})")
    present = [w for w in wanted if (w[1], w[2], w[3]) in available[w[0]]]
    missing = [w for w in wanted if (w[1], w[2], w[3]) not in available[w[0]]]
    if not present:
        raise DatasetError(
            f"no Human3.6M test sequence found under {data_dir}: expected "
            "S9/MyPoseFeatures/D3_Positions_mono/<Action> <n>.<camera>.cdf (and S11)"
            + (", each action with its two trials' files" if lone else "")
        )
    if missing and not allow_partial:
        s, a, t, c = missing[0]
        raise DatasetError(
            f"{len(missing)} of the {len(wanted)} protocol-{protocol} sequences are missing "
            f"under {data_dir} (first: S{s} {a} trial {t} camera {CAMERAS[c]}); "
            "pass --allow-partial to score the ones present"
        )

    keys: list[str] = []
    joints: list[np.ndarray] = []
    actions: list[str] = []
    sequences: list[str] = []
    stems: list[tuple[int, str, np.ndarray]] = []
    for s, a, t, c in track(present, desc=f"reading H36M P{protocol}", unit="seq"):
        stem = available[s][(a, t, c)]
        path = data_dir / f"S{s}" / "MyPoseFeatures" / "D3_Positions_mono" / f"{stem}.cdf"
        poses = read_poses(path, 3)
        if poses.shape[1] != 32:
            raise DatasetError(f"{path}: expected 32 joints per frame, found {poses.shape[1]}")
        frames = np.arange(0, poses.shape[0], frame_step)
        joints.append(h36m32_to_lsp14(poses[frames]))
        seq = f"S{s}_{a}_{t}_cam{c}"
        keys.extend(f"S{s}/{stem}/{f:06d}" for f in frames)
        actions.extend([a] * len(frames))
        sequences.extend([seq] * len(frames))
        stems.append((s, stem, frames))

    def images() -> list[ImageRef]:
        refs: list[ImageRef] = []
        for s, stem, frames in stems:
            d2 = data_dir / f"S{s}" / "MyPoseFeatures" / "D2_Positions" / f"{stem}.cdf"
            video = data_dir / f"S{s}" / "Videos" / f"{stem}.mp4"
            if not d2.is_file() or not video.is_file():
                raise DatasetError(f"running a network on Human3.6M needs {d2} and {video}")
            kp = h36m32_to_lsp14(read_poses(d2, 2))
            if kp.shape[0] <= frames[-1]:
                raise DatasetError(f"{d2} has fewer frames than the 3D poses")
            refs.extend(ImageRef(video, int(f), kp[f]) for f in frames)
        return refs

    return Benchmark(
        protocol=f"h36m-p{protocol}",
        keys=keys,
        joints=np.concatenate(joints, axis=0),
        joint_set="lsp14",
        groups={"action": actions, "sequence": sequences},
        levels=("action", "sequence"),
        mean_of={"action": "sequence"},
        headline="action",
        images=images,
        settings={
            "frame_step": frame_step,
            "sequences": len(present),
            "sequences_expected": len(wanted),
            "trial_rule": "an action's two file names in file-name order; trial 0 = first",
        },
    )
