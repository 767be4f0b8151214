"""The demo's result files: one JSON document and one NPZ archive per body.

The JSON document follows ``openhmr/schema/prediction.schema.json``
(``"schema": "openhmr.prediction/1"``): everything needed to use the body or
redraw the overlay with another renderer, as plain numbers. The NPZ archive
holds the same arrays plus the mesh (vertices and faces); a video's archive
stacks every frame's arrays along a leading frame axis.

``validate(document, schema)`` checks a document against the schema; it
implements the JSON-Schema keywords that schema uses (and refuses others, so a
schema edit cannot silently weaken the check).
"""

from __future__ import annotations

import itertools
import json
import math
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openhmr.data.crop import CropTransform
from openhmr.errors import NPZ_READ_ERRORS, OpenHMRError
from openhmr.io.npz import open_npz, save_npz
from openhmr.io.output_paths import replacing

SCHEMA_ID = "openhmr.prediction/1"
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schema" / "prediction.schema.json"


@dataclass
class SceneCamera:
    """Where a person stands in the one camera shared by all the people of a
    photo (:func:`openhmr.demo.outputs.place_in_scene`).

    Attributes:
        focal: the shared focal length, image pixels (square pixels).
        principal_point: (2,) the image centre, pixels.
        translation: (3,) metres added to the person's body-frame points to
            place them in that camera's frame.
    """

    focal: float
    principal_point: np.ndarray
    translation: np.ndarray


@dataclass
class Prediction:
    """One recovered body in one image, as numpy arrays.

    Attributes:
        body_model: the body model's name ("smpl", "anny").
        num_joints: J of the body model.
        cam: (3,) weak-perspective camera (s, tx, ty).
        pose: (3·J,) axis-angle, radians.
        betas: (k,) shape parameters.
        vertices: (V, 3) metres, body frame (x right, y down, z forward).
        faces: (F, 3) triangle vertex indices.
        joints_3d: (J, 3) skeleton joints, metres, body frame.
        keypoints_3d: set name → (K, 3) metres, body frame.
        keypoints_2d: set name → (K, 2) image pixels.
        crop: the crop the network saw.
        center: (2,) requested crop centre, image pixels.
        focal: (2,) fx, fy of the equivalent pinhole camera, image pixels.
        principal_point: (2,) image pixels.
        translation: (3,) metres added to body-frame points to reach the camera frame.
        image_size: (height, width).
        method: "hmr", "fit" or "hmr+fit".
        person_source: "bbox", "openpose", "detect" or "tight".
        input: the input path as given.
        frame: video frame index, None for an image.
        person: 1, 2, … among the people of a photo (``--max-people`` > 1).
        scene: with several people in a photo, this person's place in the
            camera they share (the ``_scene`` mesh); None otherwise.
    """

    body_model: str
    num_joints: int
    cam: np.ndarray
    pose: np.ndarray
    betas: np.ndarray
    vertices: np.ndarray
    faces: np.ndarray
    joints_3d: np.ndarray
    keypoints_3d: dict[str, np.ndarray]
    keypoints_2d: dict[str, np.ndarray]
    crop: CropTransform
    center: np.ndarray
    focal: np.ndarray
    principal_point: np.ndarray
    translation: np.ndarray
    image_size: tuple[int, int]
    method: str
    person_source: str
    input: str
    frame: int | None = None
    person: int | None = None
    scene: SceneCamera | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def camera_vertices(self) -> np.ndarray:
        """(V, 3) vertices in the camera frame, metres (body frame + translation)."""
        return self.vertices + self.translation[None, :]


def scene_translation(pred: Prediction, centroid: np.ndarray, focal: float,
                      principal_point: np.ndarray) -> np.ndarray:
    """Where ``pred``'s body goes in another pinhole camera (square pixels,
    ``focal`` and ``principal_point`` in image pixels), moved rigidly.

    The centroid P of the body's vertices, seen at pixel p = fx·P_xy/P_z + c
    by the body's own camera, goes to depth Z′ = P_z·f/fx on the new camera's
    ray through the same pixel: X′, Y′ = (p − c′)·Z′/f. That pixel, and the
    body's size in pixels there, are as in its own camera.

    Args:
        centroid: (3,) the vertices' centroid in the body's own camera frame,
            metres (``pred.camera_vertices().mean(0)``), in front of it.
    Returns:
        (3,) metres added to body-frame points to place them in the new
        camera's frame; NaN where the centroid is not finite or not in front.
    """
    if not (np.isfinite(centroid).all() and centroid[2] > 0):
        return np.full(3, np.nan)
    pixel = pred.focal * centroid[:2] / centroid[2] + pred.principal_point
    depth = centroid[2] * focal / float(pred.focal[0])
    placed = np.append((pixel - principal_point) * depth / focal, depth)
    return pred.translation + placed - centroid


def image_centre(image_size: tuple[int, int] | np.ndarray) -> np.ndarray:
    """(2,) the centre of an image of (height, width), pixels (x, y)."""
    height, width = (float(v) for v in image_size)
    return np.array([width / 2.0, height / 2.0])


def _floats(a: np.ndarray) -> list:
    values = np.asarray(a, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("prediction holds non-finite values")
    return values.tolist()


def to_document(pred: Prediction, files: dict[str, str | None]) -> dict[str, Any]:
    """The JSON document of one prediction (see the schema for every field)."""
    from openhmr.body.keypoints import KEYPOINT_SETS

    def names(set_name: str, count: int) -> list[str]:
        kp_set = KEYPOINT_SETS.get(set_name)
        if kp_set is not None and len(kp_set) == count:
            return list(kp_set.names)
        return [f"{set_name}_{i}" for i in range(count)]

    crop = pred.crop
    person = {} if pred.person is None else {"person": int(pred.person)}
    scene = {} if pred.scene is None else {"scene_camera": {
        "focal": float(pred.scene.focal),
        "principal_point": _floats(pred.scene.principal_point),
        "translation": _floats(pred.scene.translation),
    }}
    return {
        "schema": SCHEMA_ID,
        "input": pred.input,
        "frame": pred.frame,
        **person,
        "image_size": [int(pred.image_size[0]), int(pred.image_size[1])],
        "method": pred.method,
        "person_source": pred.person_source,
        "body_model": {
            "name": pred.body_model,
            "num_joints": int(pred.num_joints),
            "num_betas": int(len(pred.betas)),
            "num_vertices": int(len(pred.vertices)),
        },
        "cam": _floats(pred.cam),
        "pose": _floats(pred.pose),
        "betas": _floats(pred.betas),
        "keypoints_2d": {
            k: {"names": names(k, len(v)), "points": _floats(v)} for k, v in pred.keypoints_2d.items()
        },
        "keypoints_3d": {
            k: {"names": names(k, len(v)), "points": _floats(v)} for k, v in pred.keypoints_3d.items()
        },
        "joints_3d": _floats(pred.joints_3d),
        "crop": {
            "box": list(crop.box),
            "center": _floats(pred.center),
            "requested_scale": crop.requested_scale,
            "scale_x": crop.scale_x,
            "scale_y": crop.scale_y,
            "start": [int(crop.start[0]), int(crop.start[1])],
            "crop_size": int(crop.crop_size),
            "scaled_size": [int(crop.scaled_size[0]), int(crop.scaled_size[1])],
        },
        "camera": {
            "focal": _floats(pred.focal),
            "principal_point": _floats(pred.principal_point),
            "translation": _floats(pred.translation),
        },
        **scene,
        "files": dict(files),
    }


def write_json(path: Path, pred: Prediction, files: dict[str, str | None]) -> None:
    """Write the prediction's JSON document to ``path``."""
    document = json.dumps(to_document(pred, files), indent=1) + "\n"
    with replacing(path) as tmp:
        tmp.write_text(document)


def read_openhmr_json(path: Path) -> dict[str, Any] | None:
    """The document of a prediction json openhmr wrote (its ``schema``), or
    None for any other file, unreadable ones included (and anything but a
    regular file: a FIFO of that name would block the read)."""
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested too deep
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == SCHEMA_ID else None


def is_openhmr_npz(path: Path) -> bool:
    """Whether ``path`` is a prediction npz openhmr wrote (its ``schema``);
    False for any other file, unreadable or damaged ones included."""
    try:
        with open_npz(path) as data:
            return "schema" in data.files and str(data["schema"]) == SCHEMA_ID
    except (*NPZ_READ_ERRORS, KeyError):
        return False


def prediction_arrays(pred: Prediction) -> dict[str, np.ndarray]:
    """The NPZ arrays of one prediction (names as in the JSON document)."""
    arrays = {
        "cam": pred.cam, "pose": pred.pose, "betas": pred.betas,
        "vertices": pred.vertices, "joints_3d": pred.joints_3d,
        "crop_box": np.asarray(pred.crop.box), "crop_center": pred.center,
        "crop_scale": np.array([pred.crop.scale_x, pred.crop.scale_y]),
        "crop_start": np.asarray(pred.crop.start),
        "crop_requested_scale": np.array(pred.crop.requested_scale),
        "crop_size": np.array(int(pred.crop.crop_size)),
        "crop_scaled_size": np.asarray(pred.crop.scaled_size),
        "focal": pred.focal, "principal_point": pred.principal_point,
        "translation": pred.translation, "image_size": np.asarray(pred.image_size),
    }
    if pred.scene is not None:
        arrays |= {"scene_focal": np.array(pred.scene.focal),
                   "scene_principal_point": pred.scene.principal_point,
                   "scene_translation": pred.scene.translation}
    for k, v in pred.keypoints_2d.items():
        arrays[f"keypoints_2d/{k}"] = v
    for k, v in pred.keypoints_3d.items():
        arrays[f"keypoints_3d/{k}"] = v
    return {k: np.asarray(v, dtype=np.float32 if np.asarray(v).dtype.kind == "f" else None)
            for k, v in arrays.items()}


def check_finite(pred: Prediction, frame: int | None = None) -> None:
    """OpenHMRError if the body's estimate holds NaN or infinite values, so that
    none of its files is written (a broken weights or body-model file, not a
    hard photo, makes them); a video's ``frame`` is named."""
    # The camera's translation too: a weak camera of scale 0 puts the body at infinite depth.
    fields = {name: getattr(pred, name) for name in ("cam", "pose", "betas", "vertices", "joints_3d", "translation")}
    fields |= {f"keypoints_2d/{k}": v for k, v in pred.keypoints_2d.items()}
    fields |= {f"keypoints_3d/{k}": v for k, v in pred.keypoints_3d.items()}
    for name, values in fields.items():
        if values is not None and not np.isfinite(np.asarray(values, np.float64)).all():
            raise OpenHMRError(f"{'' if frame is None else f'frame {frame}: '}the estimated {name} holds NaN or "
                               "infinite values, so nothing was written; are the weights and the body model file intact?")


def write_npz(path: Path, pred: Prediction) -> None:
    """One image's arrays (``prediction_arrays``) plus ``faces`` and metadata strings."""
    person = {} if pred.person is None else {"person": np.array(pred.person)}
    with replacing(path) as tmp:
        save_npz(tmp, {
            **prediction_arrays(pred), **person, "faces": pred.faces.astype(np.int32),
            "schema": np.array(SCHEMA_ID), "body_model": np.array(pred.body_model),
            "method": np.array(pred.method), "person_source": np.array(pred.person_source),
            "input": np.array(pred.input),
        }, compress=True)


def write_video_npz(path: Path, preds: list[Prediction], num_frames: int, fps: float,
                    smoothing: str = "none", vertices: Iterable[np.ndarray] | None = None,
                    person: int | None = None, scene_focal: float | None = None) -> list[int]:
    """A video's arrays: each of ``prediction_arrays`` stacked to (T, ...) over
    the T frames with a body, with ``frame`` (T,) their indices in the video,
    ``smoothing`` how the estimates were smoothed over time ("clip", "causal"
    or "none") and ``smoothed`` (bool) whether they were.

    Each frame's camera is its own crop's, so ``translation`` jumps with the
    crop and a body walking away keeps about the same depth. The video's one
    camera is ``scene_focal`` (pixels; by default the median of the frames'
    focal lengths) with its principal point at the image centre, and
    ``scene_translation`` (T, 3) places each frame's body in it
    (:func:`scene_translation`): a trajectory in one fixed camera. For a
    video's several people, pass them all the same ``scene_focal``.

    ``vertices``, if given, yields each frame's (V, 3) vertices in the order
    of ``preds`` (whose own ``vertices`` are then ignored); they are written
    as they come, so a long video's meshes never have to be in memory at
    once (a (T, V, 3) float32 array: 83 KB per frame for SMPL). The archive
    is written to a temporary name beside it (``replacing``) and renamed
    when complete.
    ``person``, for a video with several people, is the person's number.

    Returns:
        the frames (video indices) whose body has no place in the scene camera
        (behind its own camera: HMR's scale s ≤ 0); their ``scene_translation``
        rows are NaN.
    """
    arrays: dict[str, np.ndarray] = {}
    unplaced: list[int] = []
    if preds:
        per_frame = [prediction_arrays(p) for p in preds]
        keys = [k for k in per_frame[0] if not (vertices is not None and k == "vertices")]
        arrays = {k: np.stack([a[k] for a in per_frame]) for k in keys}
        faces = preds[0].faces.astype(np.int32)
        meta = preds[0]
        arrays |= {"body_model": np.array(meta.body_model), "method": np.array(meta.method),
                   "person_source": np.array(meta.person_source), "input": np.array(meta.input)}
    else:
        faces = np.zeros((0, 3), np.int32)
    arrays |= {
        "faces": faces, "frame": np.array([p.frame for p in preds], dtype=np.int64),
        "num_frames": np.array(num_frames), "fps": np.array(fps),
        "smoothing": np.array(smoothing), "smoothed": np.array(smoothing != "none"),
        "schema": np.array(SCHEMA_ID),
    }
    if person is not None:
        arrays["person"] = np.array(person)
    centroids: list[np.ndarray] = []
    streamed = None
    if vertices is not None:
        def measured(rows: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
            for pred, row in zip(preds, rows):
                centroids.append(np.asarray(row, np.float64).mean(0) + pred.translation)
                yield row
            yield from rows  # more rows than frames: _write_npz reports them

        streamed = ("vertices", len(preds), measured(iter(vertices))) if preds else None
        if not preds:
            arrays["vertices"] = np.zeros((0, 0, 3), np.float32)
    else:
        centroids = [p.camera_vertices().astype(np.float64).mean(0) for p in preds]

    def scene() -> dict[str, np.ndarray]:
        if not preds:
            return {}
        focal = scene_focal if scene_focal is not None else float(
            np.median([float(p.focal[0]) for p in preds]))
        centre = image_centre(preds[0].image_size)
        placed = [scene_translation(p, c, focal, centre) for p, c in zip(preds, centroids)]
        unplaced.extend(int(p.frame or 0) for p, t in zip(preds, placed) if not np.isfinite(t).all())
        return {"scene_focal": np.array(focal, np.float32),
                "scene_principal_point": centre.astype(np.float32),
                "scene_translation": np.stack(placed).astype(np.float32)}

    with replacing(path) as partial:
        _write_npz(partial, arrays, streamed, scene)
    return unplaced


def unplaced_note(frames: list[int]) -> str:
    """The warning for a video's frames whose body has no place in the scene
    camera (``write_video_npz``'s return), the first few named."""
    shown = ", ".join(map(str, frames[:5])) + (", …" if len(frames) > 5 else "")
    return (f"{len(frames)} frame(s) have their body behind its camera (frame {shown}); their "
            "scene_translation is NaN")


def _write_npz(path: Path, arrays: dict[str, np.ndarray],
               streamed: tuple[str, int, Iterable[np.ndarray]] | None,
               after: Callable[[], dict[str, np.ndarray]] | None = None) -> None:
    """A compressed ``.npz`` as ``np.savez_compressed`` writes it, plus, with
    ``streamed`` = (name, rows, row iterator), one array of ``rows`` equal
    rows written one row at a time (float32), and then the arrays ``after()``
    returns (which may depend on the rows streamed)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        def write(items: dict[str, np.ndarray]) -> None:
            for key, value in items.items():
                with archive.open(f"{key}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)

        write(arrays)
        if streamed is not None:
            _write_rows(archive, *streamed)
        if after is not None:
            write(after())


def _write_rows(archive: zipfile.ZipFile, name: str, rows: int, row_iter: Iterable[np.ndarray]) -> None:
    """``rows`` equal float32 rows as one array ``name`` of the archive."""
    it = iter(row_iter)
    first = np.asarray(next(it), dtype="<f4")
    header = {"descr": np.lib.format.dtype_to_descr(first.dtype), "fortran_order": False,
              "shape": (rows, *first.shape)}
    with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, header)
        count = 0
        for row in itertools.chain([first], it):
            row = np.ascontiguousarray(row, dtype="<f4")
            if row.shape != first.shape:
                raise ValueError(f"{name}: row {count} has shape {row.shape}, expected {first.shape}")
            f.write(row.tobytes())
            count += 1
    if count != rows:
        raise ValueError(f"{name}: {count} rows written, {rows} expected")


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


# ----------------------------------------------------------------------------
# A small JSON-Schema validator for the keywords the prediction schema uses.

_ANNOTATIONS = {"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples"}
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class SchemaViolation(ValueError):
    """A document does not match its schema; the message names the JSON path."""


def validate(instance: Any, schema: dict[str, Any], root: dict[str, Any] | None = None,
             where: str = "$") -> None:
    """Check ``instance`` against ``schema``; raise ``SchemaViolation`` at the first mismatch.

    Supported keywords: type, const, enum, properties, required,
    additionalProperties (bool or schema), items, minItems, maxItems,
    minimum, exclusiveMinimum and local ``$ref`` ("#/$defs/...").
    """
    root = schema if root is None else root
    unknown = set(schema) - _ANNOTATIONS - {
        "type", "const", "enum", "properties", "required", "additionalProperties", "items",
        "minItems", "maxItems", "minimum", "exclusiveMinimum", "$ref"}
    if unknown:
        raise ValueError(f"validator does not implement schema keywords {sorted(unknown)}")
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref is supported, got {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        validate(instance, target, root, where)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](instance) for t in types):
            raise SchemaViolation(f"{where}: expected {' or '.join(types)}, got {type(instance).__name__}")
    if "const" in schema and instance != schema["const"]:
        raise SchemaViolation(f"{where}: expected {schema['const']!r}, got {instance!r}")
    if "enum" in schema and instance not in schema["enum"]:
        raise SchemaViolation(f"{where}: {instance!r} is not one of {schema['enum']}")
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            raise SchemaViolation(f"{where}: {instance} < minimum {schema['minimum']}")
        if "exclusiveMinimum" in schema and instance <= schema["exclusiveMinimum"]:
            raise SchemaViolation(f"{where}: {instance} <= {schema['exclusiveMinimum']}")
    if isinstance(instance, dict):
        for key in schema.get("required", []):
            if key not in instance:
                raise SchemaViolation(f"{where}: missing required property {key!r}")
        props = schema.get("properties", {})
        extra_rule = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in props:
                validate(value, props[key], root, f"{where}.{key}")
            elif extra_rule is False:
                raise SchemaViolation(f"{where}: unexpected property {key!r}")
            elif isinstance(extra_rule, dict):
                validate(value, extra_rule, root, f"{where}.{key}")
    if isinstance(instance, list):
        if "minItems" in schema and len(instance) < schema["minItems"]:
            raise SchemaViolation(f"{where}: {len(instance)} items, fewer than {schema['minItems']}")
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            raise SchemaViolation(f"{where}: {len(instance)} items, more than {schema['maxItems']}")
        if "items" in schema:
            for i, value in enumerate(instance):
                validate(value, schema["items"], root, f"{where}[{i}]")
