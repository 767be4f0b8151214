"""Bodies fitted to keypoint files, without their images (``openhmr fit``).

Each OpenPose JSON file gives one person (the most confident, as the
original): its keypoints are placed in HMR's crop exactly as the demo places
them (:func:`openhmr.data.crop.scale_for_keypoints`, the box diagonal scaled
to 150 px), and :class:`openhmr.demo.FitPredictor` fits the body model in that
crop with the weak camera — what ``openhmr demo --method fit --openpose``
does, minus the pixels. The image's size, which OpenPose does not record, is
given, so that the equivalent pinhole camera (principal point at the image
centre) and the image-pixel keypoints are those of the real image.

Outputs per file: ``<name>.json`` (``openhmr.prediction/1``, no pictures),
``<name>.npz`` and the mesh, ``<name>`` being the file's stem without
OpenPose's ``_keypoints`` suffix (with its path below a folder given).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openhmr.data.crop import crop_transform, scale_for_keypoints
from openhmr.errors import InputError, OpenHMRError

SUFFIX = "_keypoints"


@dataclass
class FitFilesOptions:
    """What ``openhmr fit`` was asked to do.

    Attributes:
        inputs: JSON files, or folders searched for them recursively.
        image_size: (width, height) of the images the keypoints were found in, pixels.
        smpl: an SMPL model file to fit instead of Anny.
        fit_config: ``openhmr.fit.FitConfig``; None = its defaults.
    """

    inputs: list[str]
    image_size: tuple[int, int]
    out: Path = Path("openhmr_out")
    smpl: Path | None = None
    mesh_format: str = "obj"
    overwrite: bool = False
    device: str = "cpu"
    fit_config: Any = None


def parse_image_size(text: str) -> tuple[int, int]:
    """``"640x480"`` (or ``"640,480"``) → (width, height); InputError if malformed."""
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"--image-size must be WIDTHxHEIGHT in pixels, e.g. 1920x1080, got {text!r}") from None
    if width < 1 or height < 1:
        raise InputError(f"--image-size must be positive, got {text!r}")
    return width, height


def collect_keypoint_files(inputs: list[str | Path]) -> list[tuple[Path, str]]:
    """(file, output name) for every input file, and every ``*.json`` below an
    input folder (sorted); a path that does not exist is kept, to fail in turn."""
    found: list[tuple[Path, str]] = []
    for given in map(Path, inputs):
        if given.is_dir():
            for f in sorted(given.rglob("*.json")):
                found.append((f, f.relative_to(given).with_suffix("").as_posix()))
        else:
            found.append((given, given.stem))
    return [(f, name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name) for f, name in found]


def _check_inside(keypoints: np.ndarray, width: int, height: int) -> None:
    """Keypoints far outside the image mean a wrong --image-size."""
    confident = keypoints[keypoints[:, 2] > 0, :2]
    margin = 0.05 * max(width, height)
    if ((confident < -margin) | (confident > np.array([width, height]) + margin)).any():
        raise InputError(f"keypoints lie outside the {width}×{height} image; "
                         "is --image-size the size of the image they were found in?")


def run_fit_files(options: FitFilesOptions) -> int:
    """Fit every input file; return the exit code (0, or 1 if any file failed)."""
    import torch

    from openhmr.demo import (MESH_FORMATS, FitPredictor, PersonLocation, _check_free, _progress,
                              image_outputs, load_anny, read_openpose, write_image_outputs)

    if options.mesh_format not in MESH_FORMATS:
        raise InputError(f"unknown mesh format {options.mesh_format!r}; choose one of {', '.join(MESH_FORMATS)}")
    width, height = options.image_size
    files = collect_keypoint_files(options.inputs)
    if not files:
        raise InputError("no keypoint files (.json) found")
    device = torch.device(options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but this torch has no CUDA device")
    if options.smpl is not None:
        from openhmr.body.smpl import SMPL

        body = SMPL(options.smpl)
    else:
        body = load_anny()
    predictor = FitPredictor(body.to(device), "fit", None, options.fit_config, track=False)
    out = Path(options.out)
    failures = 0
    for path, name in _progress(files, len(files), "keypoint files", "file"):
        try:
            paths = image_outputs(out, name, options.mesh_format)
            _check_free(paths, options.overwrite)
            keypoints, layout = read_openpose(path)
            _check_inside(keypoints, width, height)
            scale, centre = scale_for_keypoints(keypoints)
            transform = crop_transform((height, width), scale, centre)
            location = PersonLocation(scale, centre, "openpose", keypoints, layout)
            pred = predictor.predict(None, [transform], [location], [(str(path), None, (height, width))])[0]
            write_image_outputs(None, pred, paths, options.mesh_format, render=False)  # type: ignore[arg-type]
        except Exception as e:  # noqa: BLE001 - report and go on with the next file
            failures += 1
            text = str(e) if isinstance(e, OpenHMRError) else f"{type(e).__name__}: {e}"
            print(f"openhmr fit: error: {path}: {text}", file=sys.stderr)
    done = len(files) - failures
    print(f"openhmr fit: {done} of {len(files)} file(s) fitted; outputs in {out}", file=sys.stderr)
    return 1 if failures else 0
