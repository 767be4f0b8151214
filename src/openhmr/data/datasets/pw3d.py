"""3DPW → shards with 2D keypoints and SMPL parameters (and optionally 3D joints).

Reads under ROOT:

* ``sequenceFiles/{train,validation,test}/<seq>.pkl``: Python 2 pickles
  (protocol 2) of a dict with, per person p: ``poses[p]`` (T, 72) SMPL
  axis-angle in the world frame, ``betas[p]`` (≥10), ``poses2d[p]``
  (T, 3, 18) OpenPose COCO-18 (x, y, confidence), ``campose_valid[p]`` (T,),
  ``genders[p]``; per frame ``cam_poses`` (T, 4, 4) world → camera and
  ``img_frame_ids`` (T,); ``cam_intrinsics`` (3, 3). They are loaded with an
  unpickler that accepts numpy arrays and plain Python values only.
* ``imageFiles/<seq>/image_%05d.jpg``.

Per person and frame with a valid camera pose (every ``stride``-th frame):

* keypoints: COCO-18 → cocoplus by name (``openhmr.body.keypoints``; the
  OpenPose neck is LSP's neck, head top is unlabelled), visible where the
  confidence exceeds ``CONF_THRESHOLD``;
* SMPL: the pose with the camera rotation applied to the root
  (R_root ← R_cam·R_root, so the body is in the camera frame, x right,
  y down, z forward, like HMR's predictions), ``betas[:10]``; ``has_smpl``;
* 3D joints only with ``smpl_dir``: a folder of SMPL model files, the gendered
  ones found by name (``*female*``/``*_f_*``, ``*male*``/``*_m_*``, else a
  ``*neutral*`` one), and HMR's cocoplus regressor taken from whichever file
  has it. The LSP-14 joints are the regressor's first 14 rows applied to the
  gendered mesh, in metres, root-relative (the 3D loss aligns by the pelvis).

Scale 150 / diagonal and a crop of at most 300×300 px (the original never
used 3DPW; these follow its MPI-INF-3DHP conversion). The scaled, cropped
intrinsics are stored as ``intrinsics``.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from openhmr.progress import track

from openhmr.body.keypoints import convert as convert_keypoints
from openhmr.data.datasets._common import (
    DatasetError, check_split, crop_intrinsics, diagonal_scale, require, scale_and_crop_person,
    write_samples,
)
from openhmr.data.shards import Sample, check_writable
from openhmr.io.images import read_image

NAME = "3dpw"
SPLIT_FOLDERS = {"train": "train", "validation": "validation", "test": "test"}
CONF_THRESHOLD = 0.0
MARGIN = 150


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 writes bytes into protocol-2 pickles (latin-1 only)."""
    if encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(f"refusing to decode bytes with the {encoding!r} codec")
    return text.encode("latin1")


def _multiarray(name: str) -> Any:
    """One of numpy's pickle helpers, taken from numpy's own pickling: they
    are private, and ``np.core``, where they lie, is deprecated in numpy 2."""
    helpers: dict[str, Any] = {"_reconstruct": np.ndarray.__reduce__(np.zeros(1))[0],
                               "scalar": np.float64(0).__reduce__()[0]}
    return helpers[name]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, numpy scalars and built-in values; nothing else."""

    _ALLOWED = {
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): lambda: _multiarray("_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): lambda: _multiarray("_reconstruct"),
        ("numpy.core.multiarray", "scalar"): lambda: _multiarray("scalar"),
        ("numpy._core.multiarray", "scalar"): lambda: _multiarray("scalar"),
        ("_codecs", "encode"): lambda: _latin1_encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        factory = self._ALLOWED.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return factory()


def load_sequence(path: Path) -> dict[str, Any]:
    """One 3DPW sequence pickle → its dict (numpy-only unpickling)."""
    try:
        with open(path, "rb") as f:
            data = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise DatasetError(f"{path} is not a 3DPW sequence file this reader accepts: {e}") from None
    except (OSError, EOFError, ValueError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} does not hold a 3DPW sequence dict")
    missing = [k for k in ("poses", "betas", "poses2d", "cam_poses", "img_frame_ids",
                           "campose_valid", "cam_intrinsics") if k not in data]
    if missing:
        raise DatasetError(f"{path} lacks {', '.join(missing)}")
    return data


def _axis_angle_to_matrix(aa: np.ndarray) -> np.ndarray:
    from openhmr.geometry.rotations import axis_angle_to_matrix

    return axis_angle_to_matrix(torch.as_tensor(aa, dtype=torch.float64)).numpy()


def _matrix_to_axis_angle(r: np.ndarray) -> np.ndarray:
    from openhmr.geometry.rotations import matrix_to_axis_angle

    return matrix_to_axis_angle(torch.as_tensor(r, dtype=torch.float64)).numpy()


def pose_in_camera(poses: np.ndarray, cam_rotations: np.ndarray) -> np.ndarray:
    """(T, 72) world-frame SMPL poses → camera frame: R_root ← R_cam · R_root."""
    out = np.asarray(poses, np.float64).copy()
    root = _axis_angle_to_matrix(out[:, :3])
    out[:, :3] = _matrix_to_axis_angle(np.asarray(cam_rotations, np.float64) @ root)
    return out


def coco18_to_cocoplus(points: np.ndarray) -> np.ndarray:
    """(..., 18, 3) OpenPose COCO-18 (x, y, conf) → (..., 19, 3) cocoplus (x, y, vis)."""
    converted, _ = convert_keypoints(torch.as_tensor(np.asarray(points, np.float64)), "coco18", "cocoplus19")
    kp = converted.numpy().copy()
    kp[..., 2] = kp[..., 2] > CONF_THRESHOLD
    return kp


class _JointRegressor:
    """LSP-14 joints of gendered SMPL meshes with HMR's cocoplus regressor."""

    def __init__(self, smpl_dir: Path) -> None:
        from openhmr.body.smpl import SMPL
        from openhmr.io.smpl_file import load_smpl_arrays

        files = sorted(p for p in require(smpl_dir, "a folder of SMPL model files").iterdir()
                       if p.suffix in (".pkl", ".npz"))
        arrays = {p: load_smpl_arrays(p) for p in files}
        regressors = [a["cocoplus_regressor"] for a in arrays.values() if "cocoplus_regressor" in a]
        if not regressors:
            raise DatasetError(f"no SMPL file in {smpl_dir} holds HMR's cocoplus regressor "
                               "(HMR's neutral_smpl_with_cocoplus_reg.pkl does); it is needed for 3D joints")
        self.regressor = torch.as_tensor(np.asarray(regressors[0])[:14], dtype=torch.float64)
        self.models: dict[str, Any] = {}
        for path, arr in arrays.items():
            name = path.name.lower()
            gender = ("f" if "female" in name or "_f_" in name else
                      "m" if "male" in name or "_m_" in name else
                      "n" if "neutral" in name else None)
            if gender and gender not in self.models:
                self.models[gender] = SMPL(arr, num_betas=10, dtype=torch.float64)
        if not self.models:
            raise DatasetError(f"no SMPL model in {smpl_dir} is named male, female or neutral")

    def joints(self, gender: str, pose: np.ndarray, betas: np.ndarray) -> np.ndarray:
        model = self.models.get(gender) or self.models.get("n") or next(iter(self.models.values()))
        with torch.no_grad():
            out = model(torch.as_tensor(pose[None], dtype=torch.float64),
                        torch.as_tensor(betas[None, :10], dtype=torch.float64))
        return (self.regressor @ out.vertices[0]).numpy()


def sequence_samples(root: Path, path: Path, stride: int,
                     regressor: _JointRegressor | None) -> Iterator[Sample]:
    data = load_sequence(path)
    seq = str(data.get("sequence", path.stem))
    cam_poses = np.asarray(data["cam_poses"], np.float64)
    frame_ids = np.asarray(data["img_frame_ids"]).astype(int).ravel()
    intrinsics = np.asarray(data["cam_intrinsics"], np.float64)
    genders = list(data.get("genders", []))
    for p in range(len(data["poses"])):
        raw_poses = np.asarray(data["poses"][p])
        raw_betas = np.asarray(data["betas"][p], np.float64).ravel()
        raw_2d = np.asarray(data["poses2d"][p], np.float64)
        valid = np.asarray(data["campose_valid"][p]).astype(bool).ravel()
        frames = len(raw_poses)
        # Checked here: numpy would broadcast one camera over every frame, and a
        # pose or shape of another size would reach training unnoticed.
        if raw_poses.ndim != 2 or raw_poses.shape[1] != 72:
            raise DatasetError(f"{path.name}: person {p}'s poses are {raw_poses.shape}, not (frames, 72)")
        if raw_betas.size < 10:
            raise DatasetError(f"{path.name}: person {p}'s betas hold {raw_betas.size} values, SMPL needs 10")
        if raw_2d.shape != (frames, 3, 18) or len(valid) != frames or len(cam_poses) != frames \
                or len(frame_ids) != frames:
            raise DatasetError(f"{path.name}: person {p}'s poses2d {raw_2d.shape}, campose_valid ({len(valid)}), "
                               f"cam_poses ({len(cam_poses)}) and img_frame_ids ({len(frame_ids)}) do not all "
                               f"cover its {frames} frames")
        poses = pose_in_camera(raw_poses, cam_poses[:, :3, :3])
        betas = raw_betas[:10]
        kp_all = coco18_to_cocoplus(raw_2d.transpose(0, 2, 1))
        gender = str(genders[p])[:1].lower() if p < len(genders) else "n"
        for t in range(0, len(poses), stride):
            if not valid[t]:
                continue
            scale = diagonal_scale(kp_all[t])
            if scale is None:
                continue
            name = f"image_{frame_ids[t]:05d}.jpg"
            image = read_image(require(root / "imageFiles" / seq / name, f"the 3DPW frame imageFiles/{seq}/{name}"),
                               upright=False)
            crop, kp, center, offset, factors = scale_and_crop_person(image, kp_all[t], scale, MARGIN)
            joints3d = None if regressor is None else regressor.joints(gender, poses[t], betas)
            yield Sample(key=f"3dpw_{seq}_p{p}_{frame_ids[t]:05d}", image=crop, keypoints2d=kp,
                         center=center, dataset=NAME, joints3d=joints3d, pose=poses[t], betas=betas,
                         extras={"intrinsics": crop_intrinsics(intrinsics, factors, offset).astype(np.float32),
                                 "source": np.array(f"imageFiles/{seq}/{name}")})


def convert(root: str | Path, out: str | Path, split: str = "train", overwrite: bool = False,
            stride: int = 1, smpl_dir: str | Path | None = None, **_: Any) -> dict[str, Any]:
    """Convert one 3DPW split under ``root`` into shards in ``out``."""
    root = Path(root)
    check_split("3DPW", split, tuple(SPLIT_FOLDERS))
    check_writable(Path(out), NAME, overwrite=overwrite)  # before reading the inputs
    if stride < 1:
        raise DatasetError(f"--stride must be at least 1, got {stride}")
    folder = require(root / "sequenceFiles" / SPLIT_FOLDERS[split], f"3DPW's sequenceFiles/{split}/ folder")
    require(root / "imageFiles", "3DPW's imageFiles/ folder")
    files = sorted(folder.glob("*.pkl"))
    if not files:
        raise DatasetError(f"no .pkl sequence file in {folder}")
    regressor = _JointRegressor(Path(smpl_dir)) if smpl_dir else None

    def samples() -> Iterator[Sample]:
        for path in track(files, desc="convert 3dpw", unit="seq"):
            yield from sequence_samples(root, path, stride, regressor)

    options = {"split": split, "root": str(root), "stride": stride, "margin": MARGIN,
               "smpl_dir": str(smpl_dir) if smpl_dir else None, "conf_threshold": CONF_THRESHOLD}
    return write_samples(samples(), Path(out), NAME, options, overwrite)
