"""``openhmr demo``: photos, folders and videos in; body meshes and pictures out.

The pipeline, one input at a time (HMR_REFERENCE §11, with its quirks fixed):

1. **Read** the image (``openhmr.io.images``: any mode → 8-bit RGB) or the
   video's frames.
2. **Locate** the person with one *person source*: an explicit box, an
   OpenPose file, the BlazePose detector, or — as the original does without a
   keypoint file — the whole image taken as a tight crop.
3. **Crop** a 224×224 window in which the person is ~150 px tall
   (``openhmr.data.crop``).
4. **Predict** the body: HMR's network (``predict_crops``), a keypoint fit of
   the body model (``fit``), or the network refined by a fit (``hmr+fit``).
5. **Map back** to the image with the crop's actual resize factors: 2D
   keypoints in image pixels and the pinhole camera that reproduces the
   weak-perspective projection there.
6. **Write** ``<name>.json`` / ``.npz`` / mesh, then render ``_overlay.png``
   and ``_views.png``. A rendering failure is reported and skipped; the
   parameters are already on disk.

Every input is processed in its own ``try``: a bad input is reported on one
line and the others still run; the exit code is 1 if any input failed.

The modules, in the pipeline's order: ``options`` (what was asked),
``sources`` (step 2), ``predictors`` (steps 4 and 5), ``outputs`` (step 6),
``video`` (the same over a video's frames, with ``people`` following several
people), ``report`` (warnings, progress, timing) and ``run`` (the loop over
the inputs).
"""

from __future__ import annotations

from openhmr.demo.options import MESH_FORMATS, METHODS, SMOOTHING, DemoOptions
from openhmr.demo.outputs import (
    check_free,
    earlier_people_files,
    finished_earlier,
    image_outputs,
    person_outputs,
    possible_outputs,
    refuse_writing_inputs,
    remove_earlier_people,
    stale_line,
    place_in_scene,
    render_overlay,
    render_people_overlay,
    save_mesh,
    save_png,
    save_scene,
    shared_camera_vertices,
    video_outputs,
    views_figure,
    write_image_outputs,
    write_people_files,
)
from openhmr.demo.people import PeopleFollower
from openhmr.demo.predictors import (
    FitPredictor,
    HMRPredictor,
    Predictor,
    load_anny,
    load_hmr,
    predict_crops,
    to_predictions,
)
from openhmr.demo.report import FittingNote, Timer, progress, progress_bar, warn
from openhmr.demo.run import build_person_source, build_predictor, resolve_method, run_demo
from openhmr.demo.sources import (
    BoxSource,
    DetectorSource,
    OpenPoseSource,
    PersonLocation,
    PersonSource,
    TightCropSource,
    parse_bbox,
)
from openhmr.demo.video import (
    body_joints,
    posed_again,
    repose,
    return_freed_memory,
    run_video,
    smooth_predictions,
    without_vertices,
    write_overlay_video,
    write_people_npz,
)
from openhmr.io.openpose import read_openpose, read_openpose_people
from openhmr.io.output_paths import check_output_folder

__all__ = [
    "MESH_FORMATS", "METHODS", "SMOOTHING", "BoxSource", "build_person_source", "build_predictor",
    "check_free", "check_output_folder", "DemoOptions", "earlier_people_files", "DetectorSource", "FitPredictor",
    "finished_earlier", "FittingNote", "HMRPredictor", "image_outputs",
    "load_anny", "load_hmr", "OpenPoseSource", "parse_bbox", "PeopleFollower", "person_outputs",
    "place_in_scene", "possible_outputs", "refuse_writing_inputs",
    "PersonLocation", "PersonSource", "body_joints", "posed_again", "predict_crops", "Predictor", "progress", "progress_bar",
    "read_openpose", "read_openpose_people", "remove_earlier_people", "render_overlay", "stale_line",
    "render_people_overlay", "repose", "resolve_method", "return_freed_memory", "run_demo",
    "run_video", "save_mesh", "save_png", "save_scene", "shared_camera_vertices", "smooth_predictions",
    "TightCropSource", "Timer", "to_predictions", "video_outputs", "views_figure", "warn",
    "without_vertices", "write_image_outputs", "write_overlay_video", "write_people_files",
    "write_people_npz",
]
