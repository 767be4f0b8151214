"""Motion-capture bodies for the adversarial prior: files, AMASS conversion, a resumable sampler.

HMR's discriminator learns "real" bodies from MoSh'ed SMPL fits of CMU,
Human3.6M (without S9, S11) and jointLim, drawn as batches of B·3 pose/shape
pairs per step (HMR_REFERENCE §10.5). openhmr keeps such sets as ``.npz``
files with

* ``pose`` (N, 3·J) float32 axis-angle (SMPL: 72, root first), and
* ``shape`` (N, k) float32 (SMPL: 10 betas).

The discriminator ignores the root rotation (it sees joints 1..J−1), so the
frame the mocap's root is expressed in does not matter.

Sources:

* the original's MoSh sets (``convert_hmr_mosh``): the release's
  ``neutrMosh/neutrSMPL_<set>/<subject>/<sequence>.pkl``, Python 2 pickles
  holding ``poses`` (or ``new_poses``) (T, 72) and the sequence's ``betas``
  (10,); as the original's ``smpl_to_tfrecords``, every pose is kept with its
  sequence's betas, and files whose path names S9 or S11 (Human3.6M's test
  subjects) are left out;
* AMASS (``convert_amass``): each AMASS ``.npz`` has ``poses`` (T, 156)
  SMPL-H axis-angle (22 body joints, then 2×15 hand joints) and ``betas``
  (16,). SMPL's 24 joints are the 22 body joints plus the two hand joints,
  which SMPL-H replaces by fingers: those two are set to zero (a flat hand).
  The betas are cut to the first 10 (SMPL-H and SMPL share the leading
  components only approximately; the prior learns shape statistics from them
  all the same). ``stride`` keeps every n-th frame (AMASS runs at
  60–250 fps, so neighbouring frames repeat each other);
* Anny (``anny_prior``): no Anny mocap exists. The documented route is the
  body model's own pose sampler (``Anny.random_pose``: uniform joint ranges)
  and adults of every build: each phenotype uniform over Anny's whole range
  (both genders, thin to heavy, short to tall), age as ``Anny.random_shape``
  draws it (adults). It is a weak prior (it rewards "inside the joint
  limits", not "looks like human motion"), stated as such in the file's
  ``source`` field. Files made before 2026-12-07 never straighten an elbow
  (``elbows_never_straighten``; training warns of them).

``MocapSampler`` draws the batches: a seeded permutation per epoch, read in
consecutive chunks, with ``state_dict``/``load_state_dict`` for exact resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from openhmr import progress
from openhmr.errors import NPZ_READ_ERRORS, InputError
from openhmr.io.images import files_below
from openhmr.io.npz import check_fits_memory, open_npz, save_npz
from openhmr.io.output_paths import replacing
from openhmr.progress import track

SMPL_BODY_VALUES = 66  # 22 body joints × 3 (SMPL-H's first joints are SMPL's first 22)
SMPL_POSE_SIZE = 72
SMPL_SHAPE_SIZE = 10


class MocapError(InputError):
    """A mocap file or folder is missing or not in the expected layout."""


def load_mocap(paths: str | Path | Sequence[str | Path]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate mocap ``.npz`` files (``pose`` (N, P), ``shape`` (N, S)).

    Returns:
        (pose (N, P) float32, shape (N, S) float32).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise MocapError("no mocap file given")
    poses, shapes = [], []
    for path in map(Path, paths):
        if not path.is_file():
            raise MocapError(f"mocap file not found: {path}")
        try:
            with open_npz(path) as f:
                missing = [name for name in ("pose", "shape") if name not in f.files]
                if missing:
                    raise MocapError(f"{path} lacks the array {missing[0]!r}; expected pose (N, 3·J) and "
                                     "shape (N, k)")
                check_fits_memory(f, ("pose", "shape"))
                pose, shape = np.asarray(f["pose"], np.float32), np.asarray(f["shape"], np.float32)
        except NPZ_READ_ERRORS as e:  # a truncated .npz is a BadZipFile
            raise MocapError(f"cannot read {path}: {e or type(e).__name__}") from None
        if pose.ndim != 2 or shape.ndim != 2 or len(pose) != len(shape):
            raise MocapError(f"{path}: pose {pose.shape} and shape {shape.shape} must be (N, P) and (N, S)")
        if not (np.isfinite(pose).all() and np.isfinite(shape).all()):  # they would train the prior to NaN
            raise MocapError(f"{path}: pose or shape holds NaN or infinite values")
        poses.append(pose)
        shapes.append(shape)
    if len({p.shape[1] for p in poses}) > 1 or len({s.shape[1] for s in shapes}) > 1:
        raise MocapError("the mocap files have different pose or shape sizes")
    pose, shape = np.concatenate(poses), np.concatenate(shapes)
    if len(pose) == 0:
        raise MocapError("the mocap files hold no samples")
    return pose, shape


def save_mocap(path: str | Path, pose: np.ndarray, shape: np.ndarray, overwrite: bool = False,
               **meta: str) -> Path:
    """Write a mocap ``.npz`` (atomically; refuses to replace a file without ``overwrite``)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise MocapError(f"the mocap output must be an .npz file, got {path}")
    if path.exists() and not overwrite:
        raise MocapError(f"{path} exists; pass --overwrite to replace it")
    with replacing(path) as tmp:
        save_npz(tmp, {"pose": np.asarray(pose, np.float32), "shape": np.asarray(shape, np.float32),
                       **{k: np.array(v) for k, v in meta.items()}})
    return path


def amass_to_smpl(poses: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One AMASS sequence → SMPL (pose (T, 72), shape (T, 10)).

    Args:
        poses: (T, ≥66) SMPL-H (or SMPL-X body) axis-angle.
        betas: (≥10,) shape.
    """
    poses = np.asarray(poses, np.float64)
    if poses.ndim != 2 or poses.shape[1] < SMPL_BODY_VALUES:
        raise MocapError(f"AMASS poses must be (T, ≥66), got {poses.shape}")
    betas = np.asarray(betas, np.float64).ravel()
    if betas.size < SMPL_SHAPE_SIZE:
        raise MocapError(f"AMASS betas must have ≥10 values, got {betas.size}")
    pose = np.zeros((len(poses), SMPL_POSE_SIZE))
    pose[:, :SMPL_BODY_VALUES] = poses[:, :SMPL_BODY_VALUES]
    shape = np.repeat(betas[None, :SMPL_SHAPE_SIZE], len(poses), axis=0)
    return pose.astype(np.float32), shape.astype(np.float32)


def convert_amass(root: str | Path, out: str | Path, stride: int = 1,
                  overwrite: bool = False) -> dict[str, Any]:
    """All AMASS sequence files under ``root`` → one SMPL mocap ``.npz``.

    Files without ``poses`` (AMASS's per-subject ``shape.npz``) are skipped.

    Returns:
        {"files": sequences used, "count": samples written, "path": out}.
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise MocapError(f"AMASS folder not found: {root}")
    if stride < 1:
        raise MocapError(f"--stride must be at least 1, got {stride}")
    if out.suffix != ".npz":  # said before the sequences are read, not after
        raise MocapError(f"the mocap output must be an .npz file, got {out}")
    if out.exists() and not overwrite:
        raise MocapError(f"{out} exists; pass --overwrite to replace it")
    # linked sub-folders too, hidden files (macOS's ._ resource forks) not
    files = [p for p in files_below(root, {".npz"}) if p.suffix == ".npz"]
    poses, shapes, used, without_betas = [], [], 0, 0
    for path in track(files, desc="convert amass", unit="file"):
        try:
            with open_npz(path) as f:
                check_fits_memory(f, ("poses", "betas"))
                if "poses" not in f.files:
                    continue  # another file of the set (a subject's shape.npz)
                if "betas" not in f.files:
                    without_betas += 1
                    continue
                pose, shape = amass_to_smpl(f["poses"][::stride], f["betas"])
        except MocapError as e:
            raise MocapError(f"{path}: {e}") from None
        except NPZ_READ_ERRORS as e:
            raise MocapError(f"cannot read {path}: {e or type(e).__name__}") from None
        if not (np.isfinite(pose).all() and np.isfinite(shape).all()):
            raise MocapError(f"{path}: its poses or betas hold NaN or infinite values")
        poses.append(pose)
        shapes.append(shape)
        used += 1
    if without_betas:
        progress.message(f"convert amass: {without_betas} sequence(s) with poses but no betas left out")
    if not used:
        raise MocapError(f"no AMASS sequence (.npz with poses and betas) under {root}")
    pose, shape = np.concatenate(poses), np.concatenate(shapes)
    if not len(pose):
        raise MocapError(f"the AMASS sequences under {root} hold no frames")
    save_mocap(out, pose, shape, overwrite=overwrite,
               source=f"AMASS {root.name}: SMPL-H body joints + zero hands, betas[:10], stride {stride}")
    return {"files": used, "count": len(pose), "path": out}


#: Human3.6M's test subjects, whose MoSh fits the original leaves out of the prior.
TEST_SUBJECTS = ("S9", "S11")


def read_mosh_sequence(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One MoSh pickle of HMR's release → (pose (T, 72), shape (T, 10)) float32,
    unpickled with numpy (and chumpy) arrays only, never code."""
    import pickle

    from openhmr.errors import SMPLFileError
    from openhmr.io.smpl_file import RestrictedUnpickler, _to_array

    try:
        with path.open("rb") as f:
            data = RestrictedUnpickler(f, encoding="latin1").load()
        if not isinstance(data, dict):
            raise MocapError(f"{path}: not a MoSh sequence (a pickled dict with poses and betas)")
        key = "poses" if "poses" in data else "new_poses"
        if key not in data or "betas" not in data:
            raise MocapError(f"{path}: a MoSh sequence holds poses (or new_poses) and betas, "
                             f"this one {sorted(map(str, data))}")
        pose, betas = _to_array(data[key], key), _to_array(data["betas"], "betas").reshape(-1)
    except SMPLFileError as e:
        raise MocapError(f"{path}: {str(e).replace('a SMPL file holds', 'a MoSh file holds')}") from None
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, AttributeError,
            KeyError, MemoryError, OverflowError, UnicodeDecodeError) as e:
        raise MocapError(f"cannot read {path} as a pickle: {e or type(e).__name__}") from None
    if pose.ndim != 2 or pose.shape[1] != SMPL_POSE_SIZE or betas.size < SMPL_SHAPE_SIZE:
        raise MocapError(f"{path}: {key} {pose.shape} and betas ({betas.size}) are not SMPL's (T, 72) and 10")
    pose = pose.astype(np.float32)
    shape = np.repeat(betas[None, :SMPL_SHAPE_SIZE].astype(np.float32), len(pose), axis=0)
    if not (np.isfinite(pose).all() and np.isfinite(shape).all()):
        raise MocapError(f"{path}: its poses or betas hold NaN or infinite values")
    return pose, shape


def convert_hmr_mosh(root: str | Path, out: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """One of HMR's MoSh sets (the folder ``neutrSMPL_CMU``, ``neutrSMPL_H3.6``
    or ``neutrSMPL_jointLim``) → a mocap ``.npz`` (see the module docstring).

    Returns:
        {"files": sequences used, "left_out": files of S9 and S11, "count":
        samples written, "path": out}.
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise MocapError(f"MoSh folder not found: {root}")
    if out.suffix != ".npz":
        raise MocapError(f"the mocap output must be an .npz file, got {out}")
    if out.exists() and not overwrite:
        raise MocapError(f"{out} exists; pass --overwrite to replace it")
    found = [p for p in files_below(root, {".pkl"}) if p.suffix == ".pkl"]  # links followed, hidden files not
    # The original's test-subject rule, on the path below the set's folder.
    files = [p for p in found if not any(s in p.relative_to(root).as_posix() for s in TEST_SUBJECTS)]
    if not files:
        raise MocapError(f"no MoSh sequence (.pkl) under {root}" + (
            f" but those of {' and '.join(TEST_SUBJECTS)}" if found else ""))
    poses, shapes = [], []
    for path in track(files, desc=f"convert {root.name}", unit="seq"):
        pose, shape = read_mosh_sequence(path)
        poses.append(pose)
        shapes.append(shape)
    pose, shape = np.concatenate(poses), np.concatenate(shapes)
    if not len(pose):
        raise MocapError(f"the MoSh sequences under {root} hold no frames")
    save_mocap(out, pose, shape, overwrite=overwrite,
               source=f"HMR MoSh set {root.name}: poses with their sequence's betas, "
                      f"{' and '.join(TEST_SUBJECTS)} left out")
    return {"files": len(files), "left_out": len(found) - len(files), "count": len(pose), "path": out}


def anny_prior(model: Any, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` samples of an Anny model's own pose/shape sampler (see the module docstring).

    Args:
        model: ``openhmr.body.anny.Anny`` (anything with ``random_pose(n,
            generator)``, ``random_shape(n, generator)`` and ``shape_range``
            over Anny's phenotypes).
    Returns:
        (pose (count, 3·J), shape (count, k)) float32.
    """
    from openhmr.body.anny import PHENOTYPES

    generator = torch.Generator().manual_seed(int(seed))
    pose = model.random_pose(count, generator=generator)
    adults = model.random_shape(count, generator=generator).detach().cpu().double()
    # Every build, not only random_shape's builds near the average (which would
    # teach the discriminator that clearly male or female bodies are fake).
    low, high = (x.detach().cpu().double() for x in model.shape_range)
    shape = low + (high - low) * torch.rand(count, len(low), generator=generator, dtype=torch.float64)
    age = PHENOTYPES.index("age")
    shape[:, age] = adults[:, age]
    return (pose.detach().cpu().numpy().astype(np.float32), shape.numpy().astype(np.float32))


def elbows_never_straighten(pose: np.ndarray, body: Any) -> bool:
    """Whether Anny samples ``pose`` (N, 3·J) never straighten an elbow past Anny's rest.

    Anny's rest forearm hangs ~42° forward (``Anny.rest_flexion``). Until
    2026-12-07 ``random_pose``, and so ``anny_prior``, counted flexion from
    that rest pose and never drew a straighter elbow; since then it counts
    from the straight arm, and ~40 % of an elbow's draws lie straighter than
    rest (the chance that none of 50 samples' 100 elbows does is ~1e-22).
    A discriminator trained on such a file learns that straight arms look
    fake. False for fewer than 50 samples or a body without ``rest_flexion``
    (SMPL, whose rest arm is straight).
    """
    rest = getattr(body, "rest_flexion", None)
    if rest is None or len(pose) < 50:
        return False
    names = list(body.joint_names)
    elbows = [names.index(f"{side}_elbow") for side in ("left", "right")]
    axes = body.bend_axes.detach().cpu().double().numpy()[elbows]  # (2, 3)
    theta = pose.reshape(len(pose), -1, 3)[:, elbows].astype(np.float64)
    # the rotation about the hinge from rest: flexion from the straight arm less the rest's
    along = (theta * axes).sum(-1)
    return bool((along >= -1e-3).all())


class MocapSampler:
    """Reproducible batches of real (pose, shape) pairs for the discriminator.

    Each epoch is a permutation of all N samples (``default_rng([seed,
    epoch])``), read in consecutive chunks of ``batch_size`` (B·3 in HMR); a
    chunk that would cross the end of an epoch continues into the next one,
    so every batch is full. ``state_dict()`` gives (seed, epoch, index) and
    ``load_state_dict`` resumes to exactly the same next batch.

    Args:
        pose: (N, P) axis-angle; shape: (N, S).
        batch_size: samples per ``next()`` call.
        seed: base seed.
    """

    def __init__(self, pose: np.ndarray, shape: np.ndarray, batch_size: int, seed: int = 0) -> None:
        if len(pose) != len(shape) or len(pose) == 0:
            raise MocapError("mocap pose and shape must be non-empty and of equal length")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.pose = torch.as_tensor(np.asarray(pose, np.float32))
        self.shape = torch.as_tensor(np.asarray(shape, np.float32))
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.epoch = 0
        self.index = 0
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.pose)

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.pose)))
        return self._perm[1]

    def next(self) -> tuple[Tensor, Tensor]:
        """The next (pose (batch, P), shape (batch, S)) float32 tensors."""
        ids: list[np.ndarray] = []
        need = self.batch_size
        while need:
            perm = self._permutation(self.epoch)
            take = perm[self.index:self.index + need]
            ids.append(take)
            need -= len(take)
            self.index += len(take)
            if self.index == len(perm):
                self.epoch += 1
                self.index = 0
        idx = torch.as_tensor(np.concatenate(ids))
        return self.pose[idx], self.shape[idx]

    __next__ = next

    def __iter__(self) -> MocapSampler:
        return self

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "index": self.index, "count": len(self.pose)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state.get("seed", self.seed)) != self.seed or int(state.get("count", len(self))) != len(self):
            raise ValueError("the saved mocap position belongs to another seed or mocap set")
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
