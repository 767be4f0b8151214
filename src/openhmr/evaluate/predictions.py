"""Predictions to score, from a file any tool can write or from HMR itself.

The predictions file is an ``.npz`` (``numpy.savez``) with:

* ``keys`` (N,) strings: the protocol's frame keys (see each reader; list
  them with ``openhmr eval ... --list-frames FILE``). Extra frames are
  ignored; a missing frame is an error.
* ``joints3d`` (N, 14, 3) float, metres, LSP-14 order (HMR's first 14
  cocoplus joints), in the camera's orientation (x right, y down, z away);
  or ``keypoints3d_h36m17`` (N, 17, 3), metres, openhmr's ``h36m17`` order
  (either is enough for the LSP-14 scores; 3DHP's 17-joint scores need the
  latter).
* optional ``vertices`` (N, V, 3), metres, same mesh as the ground truth
  (SMPL's 6890 vertices; 3DPW's PVE).
* for ``lsp``: ``keypoints2d`` (N, 14, 2), image pixels, LSP order, in the
  annotation's convention (MATLAB pixel centres at integers starting at 1).

The file is read with ``allow_pickle=False``.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from openhmr.body.keypoints import index_map
from openhmr.errors import NPZ_READ_ERRORS, InputError, require_opencv
from openhmr.io.npz import oversized, save_npz
from openhmr.io.output_paths import replacing
from openhmr.progress import track

if TYPE_CHECKING:
    import cv2

    from openhmr.body.base import BodyModel
    from openhmr.data.crop import CropTransform
    from openhmr.evaluate.benchmark import ImageRef


@dataclass
class Predictions:
    """Predictions aligned to a benchmark's frames (row i ↔ ``Benchmark.keys[i]``).

    Attributes:
        joints14: (N, 14, 3) LSP-14 joints, millimetres (None for 2D protocols).
        joints_h36m17: (N, 17, 3) H36M-17 joints, millimetres, if given.
        vertices: (N, V, 3) millimetres, if given.
        keypoints2d: (N, 14, 2) image pixels, if given.
    """

    joints14: np.ndarray | None = None
    joints_h36m17: np.ndarray | None = None
    vertices: np.ndarray | None = None
    keypoints2d: np.ndarray | None = None


def save_predictions(path: str | Path, keys: list[str], preds: Predictions) -> None:
    """Write predictions as a predictions file (the format above) that
    :func:`load_predictions` reads back: metres, and ``keypoints2d`` as
    given (the annotation's pixel convention). Written beside ``path`` and
    renamed when complete, so an interrupted write leaves no file that looks
    whole."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {"keys": np.array(keys)}
    for name, value, scale in (("joints3d", preds.joints14, 1e-3),
                               ("keypoints3d_h36m17", preds.joints_h36m17, 1e-3),
                               ("vertices", preds.vertices, 1e-3), ("keypoints2d", preds.keypoints2d, 1.0)):
        if value is not None:
            arrays[name] = (np.asarray(value) * scale).astype(np.float32 if name == "vertices" else np.float64)
    with replacing(path) as partial:
        save_npz(partial, arrays)


def h36m17_to_lsp14(points: np.ndarray) -> np.ndarray:
    """(N, 17, C) openhmr h36m17 → (N, 14, C) LSP-14 (all 14 are in H36M-17)."""
    src, dst = index_map("h36m17", "lsp14")
    out = np.zeros((*points.shape[:-2], 14, points.shape[-1]), dtype=points.dtype)
    out[..., list(dst), :] = points[..., list(src), :]
    return out


def _check_shape(name: str, array: np.ndarray, tail: tuple[int, ...], path: Path) -> None:
    if array.ndim != 1 + len(tail) or any(t and a != t for a, t in zip(array.shape[1:], tail)):
        want = "(N, " + ", ".join(str(t) if t else "V" for t in tail) + ")"
        raise InputError(f"{path}: '{name}' must be {want}, got {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{path}: '{name}' must be numeric, got {array.dtype}")


def load_predictions(path: str | Path, keys: list[str], need_2d: bool = False) -> Predictions:
    """Read a predictions ``.npz`` and align it to ``keys``.

    Raises:
        InputError: unreadable file, wrong shapes, or frames missing.
    """
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"predictions file not found: {path}") from None
    except ValueError:  # neither a zip nor an .npy: numpy would unpickle it, and may not
        raise InputError(f"{path} is not a numpy .npz file") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"cannot read {path} as a numpy .npz file: {e or type(e).__name__}") from None
    if not hasattr(data, "files"):
        raise InputError(f"{path} is a single array, not an .npz with 'keys' and predictions")
    if "keys" not in data.files:
        raise InputError(f"{path} has no 'keys' array naming the frames")
    def array(name: str) -> np.ndarray:
        try:
            reason = oversized(data, name)
            if reason is not None:
                raise InputError(f"{path}: {reason}")
            value = data[name]
        except NPZ_READ_ERRORS as e:  # pickles are refused too
            raise InputError(f"{path}: cannot read '{name}' without pickles: {e or type(e).__name__}") from None
        if not isinstance(value, np.ndarray):  # a member that is not a .npy array
            raise InputError(f"{path}: '{name}' is not a numpy array")
        return value

    # Keys saved as bytes (a numpy "S" array, as h5py and Python 2 write them) are text too.
    file_keys = [k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)
                 for k in array("keys").reshape(-1)]
    row = {k: i for i, k in enumerate(file_keys)}
    if len(row) != len(file_keys):
        raise InputError(f"{path}: 'keys' holds duplicate frame keys")
    missing = [k for k in keys if k not in row]
    if missing:
        raise InputError(
            f"{path} lacks predictions for {len(missing)} of the {len(keys)} frames to score "
            f"(first missing: {missing[0]!r}); see --list-frames for the expected keys"
        )
    take = np.array([row[k] for k in keys], dtype=np.int64)
    n = len(file_keys)

    def get(name: str, tail: tuple[int, ...], dtype: type = np.float64) -> np.ndarray | None:
        if name not in data.files:
            return None
        arr = array(name)
        _check_shape(name, arr, tail, path)
        if arr.shape[0] != n:
            raise InputError(f"{path}: '{name}' has {arr.shape[0]} rows but 'keys' has {n}")
        return arr[take].astype(dtype, copy=False)  # the rows scored, then their type: one copy

    preds = Predictions(
        joints14=get("joints3d", (14, 3)),
        joints_h36m17=get("keypoints3d_h36m17", (17, 3)),
        # float32 as a run keeps them (3DPW's ~35,000 meshes: 2.8 GB, twice that in float64)
        vertices=get("vertices", (0, 3), np.float32),
        keypoints2d=get("keypoints2d", (14, 2)),
    )

    for field, key in (("joints14", "joints3d"), ("joints_h36m17", "keypoints3d_h36m17"), ("vertices", "vertices")):
        value = getattr(preds, field)
        if value is not None:
            # A person's joints span ~1.7 m; a median span past 10 is another unit (millimetres,
            # scored as metres, gave an MPJPE of three million), refused rather than scored.
            span = np.ptp(value.reshape(len(value), -1, 3), axis=1).max(axis=-1) if len(value) else np.zeros(1)
            if np.median(span) > 10.0:
                raise InputError(f"{path}: '{key}' spans {np.median(span):.4g} units per person (median); "
                                 "predictions are in metres (millimetres? divide by 1000)")
            value *= 1000.0  # metres → millimetres, in place (a copy of the file's rows)
    if preds.joints14 is None and preds.joints_h36m17 is not None:
        preds.joints14 = h36m17_to_lsp14(preds.joints_h36m17)
    if need_2d and preds.keypoints2d is None:
        raise InputError(f"{path} has no 'keypoints2d' (N, 14, 2) array, which LSP's PCK needs")
    if not need_2d and preds.joints14 is None:
        raise InputError(f"{path} has neither 'joints3d' (N, 14, 3) nor 'keypoints3d_h36m17' (N, 17, 3)")
    for field in ("joints14", "joints_h36m17", "vertices", "keypoints2d"):
        value = getattr(preds, field)
        if value is not None and not np.isfinite(value).all():
            raise InputError(f"{path}: the predictions hold NaN or infinite values")
    return preds


#: Containers whose seeks OpenCV gets wrong without saying so (MPEG program
#: streams): :class:`FrameReader` decodes them forward only.
UNSEEKABLE_SUFFIXES = frozenset({".mpg", ".mpeg", ".vob"})


class FrameReader:
    """The pixels of benchmark frames (:class:`ImageRef`), keeping each
    video open between calls. Use as a context manager.

    Frames are asked for in order, a few apart (Human3.6M: every 5th), so a
    frame up to ``max_skip`` ahead of the video's position is reached by
    decoding forward; only a jump back or further ahead seeks. Seeking costs
    a decode from the previous keyframe: on a 1000×1000 MPEG-4 video, 26 ms
    per 5th frame against 5 ms read forward. ``seeks`` counts the seeks.

    MPEG program streams (:data:`UNSEEKABLE_SUFFIXES`: ``.mpg``, ``.mpeg``,
    ``.vob``) are never seeked: OpenCV lands 1–11 frames before the asked one
    there, and reports the asked position all the same. A frame ahead is
    decoded forward however far, one behind by opening the video again.
    """

    def __init__(self, max_skip: int = 50, open_videos: int = 2) -> None:
        self.max_skip = max_skip
        self.seeks = 0
        # Frames come a sequence at a time: the videos read last stay open (a
        # capture holds ~12 MB and a decoder thread per CPU), the others are closed.
        self.open_videos = open_videos
        self._videos: dict[Path, cv2.VideoCapture] = {}  # least recently read first
        self._next: dict[Path, int] = {}  # the frame each open video reads next

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc: object) -> None:
        for cap in self._videos.values():
            cap.release()
        self._videos.clear()
        self._next.clear()

    def __call__(self, ref: ImageRef) -> np.ndarray:
        """(H, W, 3) uint8 RGB of one frame."""
        from openhmr.io.images import open_capture, read_image

        if ref.frame is None:
            return read_image(ref.path, upright=False)  # the dataset's labels use the stored grid
        cv2 = require_opencv("reading the dataset's videos")

        cap = self._videos.pop(ref.path, None)
        if cap is None:
            while len(self._videos) >= max(1, self.open_videos):
                oldest = next(iter(self._videos))
                self._videos.pop(oldest).release()
                del self._next[oldest]
            cap = open_capture(ref.path)
            if not cap.isOpened():
                cap.release()
                raise InputError(f"OpenCV cannot open the video {ref.path}")
            self._next[ref.path] = 0
        ahead = ref.frame - self._next[ref.path]
        forward_only = ref.path.suffix.lower() in UNSEEKABLE_SUFFIXES
        if forward_only and ahead < 0:
            cap.release()
            cap = open_capture(ref.path)
            if not cap.isOpened():
                cap.release()
                raise InputError(f"OpenCV cannot open the video {ref.path}")
            ahead = ref.frame
        self._videos[ref.path] = cap  # now the most recently read
        if 0 <= ahead <= self.max_skip or forward_only:
            for _ in range(ahead):
                if not cap.grab():
                    raise InputError(f"cannot read frame {ref.frame} of {ref.path}")
        else:
            cap.set(cv2.CAP_PROP_POS_FRAMES, ref.frame)
            self.seeks += 1
        ok, bgr = cap.read()
        if not ok:
            raise InputError(f"cannot read frame {ref.frame} of {ref.path}")
        self._next[ref.path] = ref.frame + 1
        return np.ascontiguousarray(bgr[..., ::-1])


def ground_truth_crop(read: FrameReader, ref: ImageRef) -> tuple[np.ndarray, CropTransform]:
    """The original's evaluation crop of a frame: the box of its ground-truth
    2D joints scaled to a 150 px diagonal, a 224×224 window centred on it.

    Returns:
        ((224, 224, 3) uint8 crop, its ``openhmr.data.crop.CropTransform``).
    """
    from openhmr.data.crop import scale_and_crop, scale_for_keypoints

    try:
        scale, center = scale_for_keypoints(np.asarray(ref.keypoints)[:, :2])
    except InputError as e:
        where = ref.path if ref.frame is None else f"{ref.path}, frame {ref.frame}"
        raise InputError(f"{where}: no evaluation crop from its ground-truth keypoints: {e}") from None
    return scale_and_crop(read(ref), scale, center)


def predict_with_hmr(
    bench_images: list[ImageRef], weights: str | Path, smpl: str | Path | None, device: str = "cpu",
    batch_size: int = 32, keep_vertices: bool = False,
) -> Predictions:
    """Run HMR on each frame's ground-truth crop and collect its predictions.

    Crops follow the original (:func:`ground_truth_crop`). The prediction is
    the model's LSP-14 joints (metres → mm), its LSP-14 keypoints projected
    back to image pixels (continuous coordinates), and with
    ``keep_vertices`` its vertices (mm, float32: 3DPW's PVE; about 80 kB per
    frame).

    Args:
        bench_images: the benchmark's :class:`ImageRef` list.
    """
    import torch

    from openhmr.data.crop import normalize_crop
    from openhmr.demo import load_hmr
    from openhmr.devices import require_device
    from openhmr.geometry.camera import crop_normalised_to_pixels, weak_perspective_project

    model, body = load_hmr(weights, smpl, require_device(device))
    if "lsp14" not in body.keypoint_sets:
        raise InputError("the body model gives no LSP-14 keypoints; evaluation needs HMR's "
                         "cocoplus regressor (the HMR SMPL file)")
    joints: list[np.ndarray] = []
    verts: list[np.ndarray] = []
    kp2d: list[np.ndarray] = []
    with FrameReader() as read:
        for start in track(range(0, len(bench_images), batch_size), desc="running HMR", unit="batch"):
            crops, transforms = zip(*(ground_truth_crop(read, ref)
                                      for ref in bench_images[start:start + batch_size]))
            with torch.inference_mode():
                out = model(normalize_crop(np.stack(crops)).to(device))
                posed = body(out.pose, out.betas)
                lsp = posed.keypoints["lsp14"]
                uv = crop_normalised_to_pixels(weak_perspective_project(lsp, out.cam))
            joints.append(lsp.double().cpu().numpy() * 1000.0)
            if keep_vertices:
                verts.append(posed.vertices.float().cpu().numpy() * 1000.0)
            kp2d.extend(t.crop_to_image(u) for t, u in zip(transforms, uv.double().cpu().numpy()))
    return Predictions(joints14=np.concatenate(joints),
                       vertices=np.concatenate(verts) if keep_vertices else None,
                       keypoints2d=np.stack(kp2d))


# The weak camera of a frame where BlazePose finds nobody: the body centred in
# the crop, about as large as the original's 150-px person (HMR's mean scale).
UNDETECTED_CAM = (0.9, 0.0, 0.0)
# Its root: the rest body turned π about x, facing the camera, head up in the image.
UNDETECTED_ROOT = (math.pi, 0.0, 0.0)


@dataclass
class FitRun:
    """What :func:`predict_with_fit` predicted, and on how many frames it had to guess."""

    predictions: Predictions
    undetected: int


def predict_with_fit(bench_images: list[ImageRef], body_model: BodyModel | None = None, batch_size: int = 32,
                     keep_vertices: bool = False, world_landmarks: bool = True) -> FitRun:
    """The open default on each frame's ground-truth crop: BlazePose on the
    crop (:func:`ground_truth_crop`), then the body model fitted to its 2D
    keypoints and 3D world landmarks (``openhmr.fit``, weak camera in the
    crop, ``batch_size`` crops per batched fit) — the demo's ``--method fit``
    with the evaluation's crop.

    A frame where BlazePose finds nobody is predicted as the body's rest pose
    standing upright and facing the camera (:data:`UNDETECTED_ROOT`)
    and zero shape, centred in the crop (:data:`UNDETECTED_CAM`), and counted
    in ``FitRun.undetected``: every frame gets a prediction, as the protocols
    score every frame.

    Args:
        bench_images: the benchmark's :class:`ImageRef` list.
        body_model: the body to fit (default: Anny); it must give ``lsp14``
            keypoints (Anny does; SMPL with HMR's cocoplus regressor does).
        keep_vertices: also return the meshes (mm; 3DPW's PVE, for SMPL).
        world_landmarks: fit BlazePose's 3D world landmarks too (False: its
            2D keypoints alone, as the demo's ``--no-world-landmarks``).
    Returns:
        :class:`FitRun` with LSP-14 joints (mm), H36M-17 joints when the body
        gives them, LSP-14 keypoints in image pixels, and the meshes if asked.
    """
    import torch

    from openhmr.detect import detect_person
    from openhmr.errors import NoPersonError
    from openhmr.fit import FitResult, fit
    from openhmr.fit.detection import within_reach
    from openhmr.geometry.camera import crop_normalised_to_pixels, weak_perspective_project

    if body_model is None:
        from openhmr.demo import load_anny

        body_model = load_anny()
    if "lsp14" not in body_model.keypoint_sets:
        raise InputError(f"the {body_model.name} body model gives no LSP-14 keypoints; evaluation "
                         "needs them (Anny, or SMPL with HMR's cocoplus regressor)")
    with_h36m = "h36m17" in body_model.keypoint_sets
    rows: dict[str, list[np.ndarray]] = {"lsp14": [], "h36m17": [], "vertices": [], "kp2d": []}
    undetected = 0
    with FrameReader() as read:
        for start in track(range(0, len(bench_images), batch_size), desc="fitting", unit="batch"):
            crops, transforms = zip(*(ground_truth_crop(read, ref)
                                      for ref in bench_images[start:start + batch_size]))
            found: list[int] = []
            kp2d, kp3d = [], []
            for i, crop in enumerate(crops):
                try:
                    detection = detect_person(crop, with_mask=False)
                except NoPersonError:
                    continue
                found.append(i)
                kp2d.append(np.asarray(detection.keypoints2d, dtype=np.float64))
                kp3d.append(np.asarray(detection.keypoints3d, dtype=np.float64))
            undetected += len(crops) - len(found)
            n = len(crops)
            pose = body_model.default_pose().reshape(1, -1).repeat(n, 1).float().cpu()
            # upright in image coordinates (y down), as the fit's own start: unturned, the rest
            # body stands on its head and costs ~800 mm of MPJPE where PA-MPJPE sees nothing
            pose[:, :3] = torch.tensor(UNDETECTED_ROOT)
            betas = torch.zeros(n, body_model.num_betas)
            cam = torch.tensor([UNDETECTED_CAM]).repeat(n, 1)
            def fit_people(rows: list[int]) -> FitResult:
                # the detection is of the crop: its points are crop pixels; a limb guessed beyond
                # the weak camera's reach is dropped, as the demo drops it
                return fit(body_model, within_reach(np.stack([kp2d[j] for j in rows]), transforms[0].crop_size),
                           "blazepose33",
                           keypoints3d=np.stack([kp3d[j] for j in rows]) if world_landmarks else None,
                           keypoints3d_set="blazepose33" if world_landmarks else None, camera="weak",
                           crop_size=transforms[0].crop_size)

            fitted: list[tuple[list[int], FitResult]] = []
            if found:
                try:
                    fitted.append((found, fit_people(list(range(len(found))))))
                except InputError:
                    # A detection the fit cannot use (no confident keypoint) must not
                    # stop a run of hours: fit each alone, and score a refused one as
                    # undetected.
                    for j, i in enumerate(found):
                        try:
                            fitted.append(([i], fit_people([j])))
                        except InputError:
                            undetected += 1
            for rows_of_batch, result in fitted:
                pose[rows_of_batch] = result.pose.detach().float()
                betas[rows_of_batch] = result.betas.detach().float()
                cam[rows_of_batch] = result.cam.detach().float()
            with torch.no_grad():
                posed = body_model(pose, betas) if keep_vertices else body_model.forward_keypoints(pose, betas)
                lsp = posed.keypoints["lsp14"].cpu()
                uv = crop_normalised_to_pixels(weak_perspective_project(lsp, cam.to(lsp.dtype)))
            rows["lsp14"].append(lsp.double().numpy() * 1000.0)
            if with_h36m:
                rows["h36m17"].append(posed.keypoints["h36m17"].cpu().double().numpy() * 1000.0)
            if keep_vertices:
                rows["vertices"].append(posed.vertices.cpu().float().numpy() * 1000.0)
            rows["kp2d"].extend(t.crop_to_image(u) for t, u in zip(transforms, uv.double().numpy()))
    predictions = Predictions(
        joints14=np.concatenate(rows["lsp14"]),
        joints_h36m17=np.concatenate(rows["h36m17"]) if with_h36m else None,
        vertices=np.concatenate(rows["vertices"]) if keep_vertices else None,
        keypoints2d=np.stack(rows["kp2d"]),
    )
    return FitRun(predictions, undetected)
