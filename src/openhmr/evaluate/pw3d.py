"""3DPW test set (von Marcard et al., ECCV 2018): MPJPE, PA-MPJPE and PVE.

Expected layout (as distributed by the 3DPW owners)::

    DIR/sequenceFiles/test/<sequence>.pkl
    DIR/imageFiles/<sequence>/image_%05d.jpg          (network runs only)

Each sequence file is a Python-2 pickle of a dict with, per actor p (lists),
``poses`` (frames, 72) SMPL axis-angle in the world frame, ``betas`` (10,) or
more, ``trans`` (frames, 3) metres, ``genders`` ('m'/'f'), ``campose_valid``
(frames,) whether the actor's pose is valid in that frame, ``poses2d``
(frames, 3, 18); and per frame ``cam_poses`` (frames, 4, 4) world → camera,
``img_frame_ids`` (frames,), plus ``cam_intrinsics`` (3, 3) and
``sequence``. The pickles are read with a restricted unpickler that builds
numpy arrays and plain containers only; anything else is refused.

Ground truth: the gendered SMPL model (male/female files the user brings,
``SMPL(...)``) posed with the actor's pose, betas and translation, moved into
the camera frame with ``cam_poses``; the 14 LSP joints are HMR's cocoplus
regressor (first 14 rows) applied to those vertices, so ground truth and
HMR's predictions use the same joint definition. The regressor is taken from
the gendered file when it has one, otherwise from ``regressor_source``
(HMR's neutral ``neutral_smpl_with_cocoplus_reg.pkl``, same mesh topology).
Only frames with ``campose_valid`` are scored, as the field does.

Metrics (runner): MPJPE and PVE after aligning the hip midpoints (each mesh
by its own joints), PA-MPJPE; per sequence, and over all person-frames (the
headline, as SPIN and later works report 3DPW).

Frame keys: ``downtown_arguing_00/00012/0`` = sequence, image number
(``img_frame_ids``, as in ``image_00012.jpg``), actor index.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from openhmr.progress import track

from openhmr.evaluate.benchmark import Benchmark, DatasetError, ImageRef

# File names the SMPL releases use for the gendered models, tried in order.
SMPL_FILE_NAMES = {
    "m": ("SMPL_MALE.pkl", "SMPL_MALE.npz", "basicModel_m_lbs_10_207_0_v1.0.0.pkl",
          "basicmodel_m_lbs_10_207_0_v1.1.0.pkl", "smpl_male.npz"),
    "f": ("SMPL_FEMALE.pkl", "SMPL_FEMALE.npz", "basicModel_f_lbs_10_207_0_v1.0.0.pkl",
          "basicmodel_f_lbs_10_207_0_v1.1.0.pkl", "smpl_female.npz"),
}


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    # Protocol-2 pickles written by Python 3 rebuild bytes (array buffers) as
    # _codecs.encode(text, "latin1"); allow that one conversion only.
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing the {encoding!r} codec in a 3DPW file")
    return text.encode("latin1")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the numpy classes an array pickle needs."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
            ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
            ("numpy.core.multiarray", "scalar"): np.float64(0).__reduce__()[0],
            ("numpy._core.multiarray", "scalar"): np.float64(0).__reduce__()[0],
            ("_codecs", "encode"): _latin1_bytes,
        }
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a 3DPW file")


def load_sequence_file(path: str | Path) -> dict[str, Any]:
    """Read one 3DPW ``.pkl`` safely (numpy arrays, lists, dicts, strings only)."""
    path = Path(path)
    try:
        data = path.read_bytes()
        obj = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DatasetError(f"{path} is not a readable 3DPW sequence file: {e}") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{path} is not a 3DPW sequence file (no dict inside)")
    missing = [k for k in ("poses", "betas", "trans", "genders", "cam_poses", "campose_valid",
                           "img_frame_ids") if k not in obj]
    if missing:
        raise DatasetError(f"{path} lacks the 3DPW keys {', '.join(missing)}")
    return obj


def find_smpl_file(smpl_dir: Path, gender: str) -> Path:
    """The gendered SMPL model file inside ``smpl_dir``."""
    for name in SMPL_FILE_NAMES[gender]:
        for candidate in (smpl_dir / name, smpl_dir / "smpl" / name):
            if candidate.is_file():
                return candidate
    names = ", ".join(SMPL_FILE_NAMES[gender][:3])
    raise DatasetError(
        f"no {'male' if gender == 'm' else 'female'} SMPL model in {smpl_dir} (looked for {names}); "
        "3DPW's ground truth needs the gendered SMPL files from https://smpl.is.tue.mpg.de"
    )


class GroundTruthBodies:
    """Gendered SMPL bodies of 3DPW, posed in the camera frame.

    Args:
        smpl_dir: folder with the male and female SMPL files.
        regressor_source: a SMPL file with HMR's ``cocoplus_regressor`` (used
            when the gendered files have none).
    """

    def __init__(self, smpl_dir: str | Path, regressor_source: str | Path | None) -> None:
        from openhmr.body.smpl import SMPL
        from openhmr.io.smpl_file import load_smpl_arrays

        smpl_dir = Path(smpl_dir)
        regressor = None
        if regressor_source is not None:
            regressor = load_smpl_arrays(regressor_source).get("cocoplus_regressor")
        self.models: dict[str, SMPL] = {}
        self.regressors: dict[str, torch.Tensor] = {}
        for gender in ("m", "f"):
            arrays = load_smpl_arrays(find_smpl_file(smpl_dir, gender))
            reg = arrays.get("cocoplus_regressor", regressor)
            if reg is None:
                raise DatasetError(
                    "3DPW's LSP joints need HMR's cocoplus regressor: pass the HMR SMPL file "
                    "(neutral_smpl_with_cocoplus_reg.pkl) with --smpl"
                )
            if reg.shape[1] != arrays["v_template"].shape[0]:
                raise DatasetError("the cocoplus regressor and the gendered SMPL mesh differ in size")
            self.models[gender] = SMPL(arrays, num_betas=10, dtype=torch.float64).eval()
            self.regressors[gender] = torch.as_tensor(np.asarray(reg, np.float64)[:14])

    @torch.no_grad()
    def pose(
        self, gender: str, pose: np.ndarray, betas: np.ndarray, trans: np.ndarray,
        cam_pose: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vertices (n, V, 3) and LSP-14 joints (n, 14, 3), millimetres, camera frame.

        Args:
            pose: (n, 72) axis-angle; betas: (n, k); trans: (n, 3) metres;
            cam_pose: (n, 4, 4) world → camera.
        """
        model = self.models[gender]
        k = min(betas.shape[1], model.num_betas)
        out = model(torch.as_tensor(pose, dtype=torch.float64),
                    torch.as_tensor(betas[:, :k], dtype=torch.float64))
        world = out.vertices + torch.as_tensor(trans, dtype=torch.float64)[:, None]
        cam = torch.as_tensor(cam_pose, dtype=torch.float64)
        verts = world @ cam[:, :3, :3].transpose(1, 2) + cam[:, None, :3, 3]
        joints = torch.einsum("kv,bvc->bkc", self.regressors[gender], verts)
        return (verts * 1000.0).numpy(), (joints * 1000.0).numpy()


def _read_sequences(data_dir: Path) -> tuple[int, list[str], list[str], list[dict[str, Any]],
                                              list[tuple[Path, np.ndarray, int]]]:
    """The test split's valid person-frames, read and checked, before any body
    model: (sequence files, keys, each key's sequence, per-actor rows of
    parameters, (image, intrinsics, row) per key)."""
    folder = data_dir / "sequenceFiles" / "test"
    files = sorted(folder.glob("*.pkl"))
    if not files:
        raise DatasetError(f"no 3DPW test sequence found: expected {folder}/<sequence>.pkl")

    # One row per valid person-frame: (sequence, actor, frame index) and its parameters.
    keys: list[str] = []
    sequences: list[str] = []
    rows: list[dict[str, Any]] = []
    images: list[tuple[Path, np.ndarray, int]] = []
    for path in files:
        seq = load_sequence_file(path)
        name = str(seq.get("sequence", path.stem))
        try:
            frame_ids = np.asarray(seq["img_frame_ids"]).astype(int)
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: img_frame_ids is not an array of frame numbers") from None
        cam_poses = np.asarray(seq["cam_poses"], np.float64)
        intrinsics = np.asarray(seq.get("cam_intrinsics", np.eye(3)), np.float64)
        genders = list(seq["genders"])
        if not len(seq["poses"]) == len(seq["trans"]) == len(seq["betas"]) == len(seq["campose_valid"]) \
                == len(genders):
            raise DatasetError(f"{path}: genders ({len(genders)}), poses ({len(seq['poses'])}), trans "
                               f"({len(seq['trans'])}), betas ({len(seq['betas'])}) and campose_valid "
                               f"({len(seq['campose_valid'])}) do not name the same actors")
        for p, gender in enumerate(genders):
            gender = gender.decode() if isinstance(gender, bytes) else str(gender)
            if gender not in ("m", "f"):
                raise DatasetError(f"{path}: actor {p} has gender {gender!r}, expected 'm' or 'f'")
            valid_mask = np.asarray(seq["campose_valid"][p]).astype(bool).ravel()
            poses = np.asarray(seq["poses"][p], np.float64)
            trans = np.asarray(seq["trans"][p], np.float64)
            betas = np.asarray(seq["betas"][p], np.float64).reshape(-1)
            # Checked here: numpy would index past a short array with a traceback,
            # or SMPL would refuse a pose of another size deep inside the posing.
            frames = len(poses)
            if poses.ndim != 2 or poses.shape[1] != 72:
                raise DatasetError(f"{path}: actor {p}'s poses are {poses.shape}, not (frames, 72)")
            if trans.shape != (frames, 3) or len(valid_mask) != frames or len(cam_poses) != frames \
                    or len(frame_ids) != frames or cam_poses.shape[1:] != (4, 4):
                raise DatasetError(f"{path}: actor {p}'s trans {trans.shape}, campose_valid ({len(valid_mask)}), "
                                   f"cam_poses {cam_poses.shape} and img_frame_ids ({len(frame_ids)}) do not "
                                   f"all cover its {frames} frames")
            if betas.size == 0:
                raise DatasetError(f"{path}: actor {p} has no betas")
            valid = np.flatnonzero(valid_mask)
            if len(valid) == 0:
                continue
            rows.append(dict(gender=gender, pose=poses[valid], trans=trans[valid],
                             betas=np.repeat(betas[None], len(valid), 0), cam=cam_poses[valid]))
            keys.extend(f"{name}/{frame_ids[f]:05d}/{p}" for f in valid)
            sequences.extend([name] * len(valid))
            # Row numbers counted before extending: the generator would read the growing length.
            first_row = len(images)
            images.extend((data_dir / "imageFiles" / name / f"image_{frame_ids[f]:05d}.jpg",
                           intrinsics, first_row + i) for i, f in enumerate(valid))

    if not rows:
        raise DatasetError(f"no valid person-frame to score in {folder}: every actor's campose_valid is 0")
    return len(files), keys, sequences, rows, images


def frame_keys(data_dir: str | Path) -> list[str]:
    """The keys of the test split's valid person-frames, in scoring order
    (``<sequence>/<frame:05d>/<actor>``): read from the sequence files alone,
    without the SMPL models that pose the ground truth."""
    return _read_sequences(Path(data_dir))[1]


def load(
    data_dir: str | Path,
    smpl_dir: str | Path,
    regressor_source: str | Path | None = None,
    batch_size: int = 256,
) -> Benchmark:
    """Read the 3DPW test split and pose its ground-truth bodies.

    Args:
        data_dir: the 3DPW folder (layout in the module docstring).
        smpl_dir: folder with the gendered SMPL models.
        regressor_source: SMPL file holding HMR's cocoplus regressor.
        batch_size: bodies posed at once.
    """
    data_dir = Path(data_dir)
    n_files, keys, sequences, rows, images = _read_sequences(data_dir)
    # The body models are read once the sequences are known to be sound (a faulty file fails at once).
    bodies = GroundTruthBodies(smpl_dir, regressor_source)
    # Stack the rows and pose the ground truth in batches, per gender.
    gender = np.concatenate([[r["gender"]] * len(r["pose"]) for r in rows])
    params = {k: np.concatenate([r[k] for r in rows]) for k in ("pose", "trans", "betas", "cam")}
    joints = np.zeros((len(keys), 14, 3))

    def posed(idx: np.ndarray, want_vertices: bool) -> tuple[np.ndarray | None, np.ndarray]:
        verts_out = None
        joints_out = np.zeros((len(idx), 14, 3))
        for g in ("m", "f"):
            sel = np.flatnonzero(gender[idx] == g)
            if len(sel) == 0:
                continue
            rows_g = idx[sel]
            v, j = bodies.pose(g, params["pose"][rows_g], params["betas"][rows_g],
                               params["trans"][rows_g], params["cam"][rows_g])
            joints_out[sel] = j
            if want_vertices:
                if verts_out is None:
                    verts_out = np.zeros((len(idx), v.shape[1], 3))
                verts_out[sel] = v
        return verts_out, joints_out

    for start in track(range(0, len(keys), batch_size), desc="posing 3DPW ground truth", unit="batch"):
        idx = np.arange(start, min(start + batch_size, len(keys)))
        joints[idx] = posed(idx, False)[1]

    def gt_vertices(idx: np.ndarray) -> np.ndarray:
        verts = posed(np.asarray(idx), True)[0]
        if verts is None:  # only for no index: every row is posed as "m" or "f"
            raise ValueError("gt_vertices needs at least one index")
        return verts

    def image_refs() -> list[ImageRef]:
        refs = []
        for (path, k, i) in images:
            # Project the ground-truth joints to place the crop (as the field does).
            x = joints[i] / 1000.0
            uv = (x @ k.T)[:, :2] / x[:, 2:3]
            refs.append(ImageRef(path, None, uv))
        return refs

    return Benchmark(
        protocol="3dpw",
        keys=keys,
        joints=joints,
        joint_set="lsp14",
        groups={"sequence": sequences},
        levels=("sequence",),
        headline=None,
        images=image_refs,
        gt_vertices=gt_vertices,
        settings={"sequences": n_files, "valid_frames_only": True,
                  "gt_joints": "cocoplus regressor (first 14) on the gendered GT mesh"},
    )
