"""Bodies fitted to keypoint files, without their images (``openhmr fit``).

Each OpenPose JSON file gives one person (the most confident, as the
original): its keypoints are placed in HMR's crop exactly as the demo places
them (:func:`openhmr.data.crop.scale_for_keypoints`, the box diagonal scaled
to 150 px), and :class:`openhmr.demo.FitPredictor` fits the body model in that
crop with the weak camera — what ``openhmr demo --method fit --openpose``
does, minus the pixels. The image's size, which OpenPose does not record, is
given: keypoints outside it are refused, and the camera shared by a file's
people or a video's frames (its principal point at the image centre) is the
real image's; each person's own pinhole camera is their crop's, as the demo's.

Outputs per file: ``<name>.json`` (``openhmr.prediction/1``, no pictures),
``<name>.npz`` and the mesh, ``<name>`` being the file's stem without
OpenPose's ``_keypoints`` suffix (with its path below a folder given).
The files are fitted ``batch_size`` at a time, together, as the demo fits
its photos.

With ``sequence``, the files are a video's frames as OpenPose's
``--write_json`` names them, ``<video>_<frame, 12 digits>_keypoints.json``:
each video's frames are fitted in order, each fit continuing the previous
frame's (in chains fitted ``batch_size`` side by side, :mod:`openhmr.tracking`),
smoothed over time, and written as one ``<video>.npz`` — what
``openhmr demo VIDEO --openpose FOLDER --no-render`` does, minus the video.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from openhmr.data.crop import crop_transform, scale_for_keypoints
from openhmr.errors import InputError, OpenHMRError
from openhmr.io.output_paths import unique_names
from openhmr.progress import message

if TYPE_CHECKING:
    from openhmr.body.base import BodyModel
    from openhmr.demo.people import OnePersonFollower, PeopleFollower

SUFFIX = "_keypoints"
# A video frame's name once SUFFIX is stripped: <video>_<frame, 12 digits>.
FRAME_NAME = re.compile(r"^(?P<video>.+)_(?P<frame>[0-9]{12})$")

# A person of a keypoint file waiting for its batch: file, outputs, crop transform,
# location, person number (None: alone in its file), output name.
PendingFile = tuple[Path, dict[str, Path], Any, Any, int | None, str]


@dataclass
class FitFilesOptions:
    """What ``openhmr fit`` was asked to do.

    Attributes:
        inputs: JSON files, or folders searched for them recursively.
        image_size: (width, height) of the images the keypoints were found in, pixels.
        smpl: an SMPL model file to fit instead of Anny.
        fit_config: ``openhmr.fit.FitConfig``; None = its defaults.
        sequence: the files are video frames (module docstring).
        fps: the video's frame rate (sequence; the causal smoother's time
            base, and recorded in the ``.npz``).
        smoothing: sequence: "clip", "causal" or "none", as the demo's videos.
        batch_size: files fitted together (``openhmr.demo.FitPredictor``;
            1 fits each alone); with ``sequence``, a video's chains fitted
            side by side (1: one frame after another).
        noise_px: σ of the keypoints' noise in image pixels, where it is
            known and does not grow with the person (``openhmr.fit.FitConfig``'s
            ``noise_px``, scaled into each person's crop); None: noise in
            proportion to the person, as a detector's.
        max_people: up to this many people per file, the most confident
            first; above 1 each is written as ``<name>_person<k>.*``, as the
            demo writes a photo's people (with ``sequence``, each person
            followed through the frames, ``<video>_person<k>.npz``).
    """

    inputs: list[str]
    image_size: tuple[int, int]
    out: Path = Path("openhmr_out")
    smpl: Path | None = None
    mesh_format: str = "obj"
    overwrite: bool = False
    skip_existing: bool = False  # pass by the files (videos) an earlier run finished
    device: str = "cpu"
    fit_config: Any = None
    sequence: bool = False
    fps: float | None = None
    smoothing: str = "clip"
    batch_size: int = 8
    max_people: int = 1
    noise_px: float | None = None


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


def collect_keypoint_files(inputs: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """(file, output name) for every input file, and every ``.json`` (any case)
    below an input folder (sorted, through linked sub-folders) except the prediction jsons openhmr wrote there; a
    path that does not exist is kept, to fail in turn. The name is the file's
    stem (its path below an input folder) without ``_keypoints``."""
    from openhmr.io.images import files_below
    from openhmr.io.prediction import read_openhmr_json

    found: list[tuple[Path, str]] = []
    for given in map(Path, inputs):
        if given.is_dir():
            for f in files_below(given, {".json"}):
                if f.suffix.lower() != ".json" or read_openhmr_json(f) is not None:
                    continue
                found.append((f, f.relative_to(given).with_suffix("").as_posix()))
        else:
            found.append((given, given.stem))
    return [(f, _without_suffix(name)) for f, name in found]


def _without_suffix(name: str) -> str:
    """``name`` less OpenPose's ``_keypoints``, unless nothing would be left of
    the file's own name (outputs named ``.json`` would be hidden files)."""
    if not name.lower().endswith(SUFFIX):
        return name
    stripped = name[: -len(SUFFIX)]
    return name if stripped == "" or stripped.endswith("/") else stripped


def group_frames(files: list[tuple[Path, str]]) -> tuple[dict[str, list[tuple[int, Path]]], list[Path]]:
    """Video name → its (frame index, file) in frame order, from files named
    as OpenPose names a video's frames; also the files not named so. Frames
    of videos named alike in different folders are different videos; a
    file given twice counts once."""
    videos: dict[tuple[Path, str], list[tuple[int, Path]]] = {}
    others: list[Path] = []
    for path, name in files:
        match = FRAME_NAME.match(name)
        if match is None:
            others.append(path)
        else:
            # the folder resolved: one folder spelled two ways (relative, absolute, through
            # "..", a link) holds one video
            videos.setdefault((path.parent.resolve(), match["video"]), []).append((int(match["frame"]), path))
    names = unique_names([video for _, video in videos])
    # A file named twice on the command line (or through a folder and by name) is one frame.
    once = [sorted({(frame, path.resolve()): (frame, path) for frame, path in frames}.values())
            for frames in videos.values()]
    for frames in once:
        for (frame, path), (next_frame, other) in zip(frames, frames[1:]):
            if frame == next_frame:
                # e.g. walk_000000000003.json beside walk_000000000003_keypoints.json
                raise InputError(f"{path} and {other} are both frame {frame} of one video; "
                                 "keep one of them in the folder")
    return dict(zip(names, once)), others


def _locate(path: Path, width: int, height: int, max_people: int = 1, frame: bool = False,
            choose: Callable[[list[Any]], int] | None = None) -> list[tuple[Any, Any]]:
    """A keypoint file → per person, the most confident first, (the crop
    transform, the person's location), placed as the demo places OpenPose
    keypoints; with ``choose``, the one person it picks among them all (a
    video's person kept to). NoPersonError / InputError as
    ``read_openpose_people`` (a video's ``frame``: UnreadableFrameError for
    a file that cannot be read, as ``read_frame_people``); InputError for
    keypoints of a person taken outside the image."""
    from openhmr.demo import PersonLocation
    from openhmr.io.openpose import check_confidences, check_inside, read_frame_people, read_openpose_people

    people = (read_frame_people if frame else read_openpose_people)(path)
    if choose is None:
        people = people[:max_people]
    located = [PersonLocation(*scale_for_keypoints(kp), "openpose", kp, layout) for kp, layout in people]
    if choose is not None:
        k = choose(located)
        people, located = people[k:k + 1], located[k:k + 1]
    for keypoints, _ in people:  # only the people taken: someone else's do not stop the file
        check_inside(keypoints, width, height, "is --image-size the size of the image they were found in?")
        check_confidences(keypoints)  # the caller names the frame
    return [(crop_transform((height, width), loc.scale, loc.center), loc) for loc in located]


def _outputs_in(out: Path, fitted: int) -> str:
    """The summary line's ending: where the outputs are, or that there are none."""
    return f"; outputs in {out}" if fitted else "; nothing written"


def _written(paths: dict[str, Path]) -> dict[str, Path]:
    """The output files ``openhmr fit`` writes of a photo's ``paths``: no picture."""
    return {key: path for key, path in paths.items() if key not in ("overlay", "views")}


def _report(path: Path | str, error: Exception) -> None:
    text = str(error) if isinstance(error, OpenHMRError) else f"{type(error).__name__}: {error}"
    text = text.removeprefix(f"{path}: ")  # the readers name the file themselves
    message(f"openhmr fit: error: {path}: {text}")


def run_fit_files(options: FitFilesOptions) -> int:
    """Fit every input file (or, with ``sequence``, every video's frames);
    return the exit code (0, or 1 if any file or video failed)."""
    from openhmr.demo.report import speaking_as

    with speaking_as("openhmr fit"):
        return _run_fit_files(options)


def _run_fit_files(options: FitFilesOptions) -> int:
    from openhmr.demo import (MESH_FORMATS, SMOOTHING, FitPredictor, FittingNote, check_free, check_output_folder,
                              finished_earlier, image_outputs, load_anny,
                              person_outputs, possible_outputs, progress_bar, refuse_writing_inputs,
                              remove_earlier_people, stale_line, write_image_outputs, write_people_files)
    from openhmr.devices import require_device
    from openhmr.io.output_paths import committed_together

    if options.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {options.batch_size}")
    if options.max_people < 1:
        raise InputError(f"--max-people must be at least 1, got {options.max_people}")
    if options.noise_px is not None and not (np.isfinite(options.noise_px) and options.noise_px > 0):
        raise InputError(f"--noise-px must be a positive number of pixels, got {options.noise_px:g}")
    if options.mesh_format not in MESH_FORMATS:
        raise InputError(f"unknown mesh format {options.mesh_format!r}; choose one of {', '.join(MESH_FORMATS)}")
    if options.overwrite and options.skip_existing:
        raise InputError("--overwrite and --skip-existing exclude each other")
    if options.sequence:
        if options.fps is None:
            raise InputError("--sequence needs --fps, the video's frame rate (OpenPose does not record it)")
        if not (np.isfinite(options.fps) and 0 < options.fps <= 10_000):
            raise InputError(f"--fps must be the video's frame rate, a number of frames per second "
                             f"in (0, 10000], got {options.fps:g}")
        if options.smoothing not in SMOOTHING:
            raise InputError(f"unknown smoothing {options.smoothing!r}; choose one of {', '.join(SMOOTHING)}")
    check_output_folder(Path(options.out))
    files = collect_keypoint_files(options.inputs)
    if not files:
        raise InputError("no keypoint files (.json) found")
    if not options.sequence:
        files = list(zip((path for path, _ in files), unique_names([name for _, name in files])))
    videos: dict[str, list[tuple[int, Path]]] = {}
    if options.sequence:
        videos, others = group_frames(files)
        if not videos:
            raise InputError("--sequence: no files named as a video's frames "
                             "(<video>_<frame, 12 digits>_keypoints.json, as OpenPose's --write_json)")
        for path in others:
            _report(path, InputError("not named as a video frame (<video>_<frame, 12 digits>_keypoints.json)"))
    out = Path(options.out)
    several = options.max_people > 1
    inputs = frozenset(path.resolve() for path, _ in files)  # never written over, even with --overwrite
    passed = 0  # inputs an earlier run finished, passed by before the body model loads
    if options.skip_existing and options.sequence:
        unfinished = {name: frames for name, frames in videos.items()
                      if not finished_earlier(out, name, "video", frame_pattern(name, frames), several, False)}
        passed, videos = len(videos) - len(unfinished), unfinished
    elif options.skip_existing:
        unfinished_files = [(path, name) for path, name in files
                            if not finished_earlier(out, name, "image", str(path), several, False,
                                                    options.mesh_format)]
        passed, files = len(files) - len(unfinished_files), unfinished_files
    if passed:
        print(f"openhmr fit: {passed} {'video' if options.sequence else 'file'}(s) passed by: an earlier "
              f"run finished their outputs (--skip-existing)", file=sys.stderr)
    if options.sequence and not videos or not options.sequence and not files:
        return 1 if options.sequence and others else 0
    device = require_device(options.device)
    loaded: list[FitPredictor] = []

    def fit_predictor() -> FitPredictor:
        """The body model, loaded when the first file is fitted: a run whose
        every file is refused loads nothing (Anny's first load builds its
        cache, ~15 s)."""
        if not loaded:
            body: BodyModel
            if options.smpl is not None:
                from openhmr.body.smpl import SMPL

                body = SMPL(options.smpl)
                if not body.has_faces:  # a model converted from HMR's checkpoint carries none
                    if options.mesh_format == "glb" and not options.sequence:
                        raise InputError(f"--smpl {options.smpl} has no mesh faces, so no glTF mesh can be "
                                         "written: pass an official SMPL file, or --mesh-format obj or ply")
                    if not options.sequence:
                        message(f"openhmr fit: warning: --smpl {options.smpl} has no mesh faces: the mesh "
                                "files hold its vertices only")
            else:
                body = load_anny()
            loaded.append(FitPredictor(body.to(device), "fit", None, options.fit_config, track=options.sequence,
                                       side_by_side=options.smoothing != "causal", noise_px=options.noise_px))
        return loaded[0]

    if options.sequence:
        predictor = fit_predictor()
        failed = 0
        for name, frames in videos.items():
            try:
                refuse_writing_inputs(possible_outputs(out, name, "video", options.max_people,
                                                       options.mesh_format), inputs)
                if options.max_people > 1:
                    _fit_video_people(predictor, name, frames, options)
                else:
                    _fit_video(predictor, name, frames, options)
            except Exception as e:  # noqa: BLE001 - report and go on with the next video
                failed += 1
                _report(Path(frame_pattern(name, frames)), e)
        print(f"openhmr fit: {len(videos) - failed} of {len(videos)} video(s) fitted"
              f"{_outputs_in(options.out, len(videos) - failed)}", file=sys.stderr)
        return 1 if failed or others else 0
    failed = 0
    width, height = options.image_size
    pending: list[PendingFile] = []

    # Files count as done once fitted and written (or failed), not when read:
    # a batch's fit is most of the time.
    bar = progress_bar(len(files), "keypoint files", "file")

    def flush() -> None:
        """Fit the pending files together and write their outputs."""
        batch = list(pending)
        pending.clear()
        write_batch(batch)  # reports its files' own failures; what escapes stops the run
        bar.update(len({b[0] for b in batch}))

    def write_batch(batch: list[PendingFile]) -> None:
        nonlocal failed
        predictor = fit_predictor()  # a body model that fails to load stops the run
        note = FittingNote(bar)
        try:
            preds = predictor.predict(None, [b[2] for b in batch], [b[3] for b in batch],
                                      [(str(b[0]), None, (height, width)) for b in batch], done=note)
        except Exception as e:  # noqa: BLE001 - one bad batch must not stop the others
            paths_failed = list(dict.fromkeys(b[0] for b in batch))
            if len(paths_failed) > 1:  # whose fault? each file again on its own
                for path in paths_failed:
                    write_batch([b for b in batch if b[0] == path])
                return
            failed += 1
            _report(paths_failed[0], e)
            return
        finally:
            note.clear()
        broken: set[Path] = set()
        stale: dict[Path, list[Path]] = {}  # file → what write_image_outputs removed for it
        people: dict[Path, tuple[str, int]] = {}  # file → (output name, people written)
        for (path, paths, _, _, person, _), pred in zip(batch, preds):
            pred.person = person
        for path in dict.fromkeys(b[0] for b in batch):
            entries = [(b, pred) for b, pred in zip(batch, preds) if b[0] == path]
            group = [(b[1], pred) for b, pred in entries if b[4] is not None]
            try:
                # A file's outputs take their names together: stopped half-way, it leaves none.
                with committed_together():
                    shared = (write_people_files(None, [pred for _, pred in group], group[0][0],
                                                 options.mesh_format, render=False) if group else None)
                    # The people from the last to person 1, whose json tells --skip-existing
                    # the file is finished.
                    removed_files: list[Path] = []
                    for (_, paths, _, _, person, name), pred in sorted(entries, key=lambda e: -(e[0][4] or 0)):
                        removed_files += write_image_outputs(None, pred, paths, options.mesh_format,
                                                             render=False, shared=shared)
                        number = 0 if person is None else person  # people written: the highest number
                        people[path] = (name, max(number, people[path][1]) if path in people else number)
                stale[path] = removed_files
            except Exception as e:  # noqa: BLE001
                broken.add(path)
                failed += 1
                _report(path, e)
        for path, removed_files in stale.items():
            if removed_files:
                message(f"openhmr fit: warning: {path}: {stale_line(removed_files)}")
        if options.overwrite:
            for path, (name, count) in people.items():
                removed = None if path in broken else remove_earlier_people(out, name, count, str(path))
                if removed:
                    message(f"openhmr fit: warning: {path}: {removed}")

    try:
        for path, name in files:
            try:
                refuse_writing_inputs(possible_outputs(out, name, "image", options.max_people,
                                                       options.mesh_format), inputs)
                if options.max_people > 1:
                    located = _locate(path, width, height, options.max_people)
                    entries: list[PendingFile] = [
                        (path, person_outputs(out, name, k, options.mesh_format), transform, location, k, name)
                        for k, (transform, location) in enumerate(located, 1)]
                else:
                    paths = image_outputs(out, name, options.mesh_format)
                    check_free(_written(paths), options.overwrite)
                    transform, location = _locate(path, width, height)[0]
                    entries = [(path, paths, transform, location, None, name)]
                for entry in entries:
                    check_free(_written(entry[1]), options.overwrite)
                pending.extend(entries)  # all of a file's people, or none of them
            except Exception as e:  # noqa: BLE001 - report and go on with the next file
                failed += 1
                _report(path, e)
                bar.update(1)
            if len(pending) >= options.batch_size:
                flush()
        if pending:
            flush()
    finally:
        bar.close()
    print(f"openhmr fit: {len(files) - failed} of {len(files)} file(s) fitted"
          f"{_outputs_in(options.out, len(files) - failed)}", file=sys.stderr)
    return 1 if failed else 0


def _check_frames_read(name: str, found: bool, unreadable: list[tuple[int, str]], total: int) -> None:
    """After a video's frames: NoPersonError if nobody was ``found`` (saying
    how many frame files could not be read), else a warning line for those."""
    from openhmr.errors import NoPersonError
    from openhmr.io.openpose import unreadable_frames_note

    note = unreadable_frames_note(unreadable, total) if unreadable else None
    if not found:
        raise NoPersonError("no person in any frame" + (f"; {note}" if note else ""))
    if note:
        message(f"openhmr fit: warning: {name}: {note}")


def frame_pattern(name: str, frames: list[tuple[int, Path]]) -> str:
    """The frame files of the video written as ``name`` as one pattern,
    ``<folder>/<video>_*_keypoints.json`` (or however the first frame's file
    is spelled after its number: ``_*.json``, ``_*_KEYPOINTS.JSON``): how its
    results name their input."""
    first = frames[0][1]
    number = re.search(r"_[0-9]{12}(?=(_keypoints)?\.json$)", first.name, re.IGNORECASE)
    if number is None:  # not named as a frame (group_frames takes only those): the name given
        return str(first.parent / f"{Path(name).name}_*_keypoints.json")
    return str(first.parent / f"{first.name[:number.start()]}_*{first.name[number.end():]}")


def _sequence_fps(options: FitFilesOptions) -> float:
    """``options.fps``, which ``run_fit_files`` checks is given before fitting a sequence."""
    if options.fps is None:
        raise InputError("--sequence needs --fps, the video's frame rate (OpenPose does not record it)")
    return options.fps


def _fit_frames(predictor: Any, name: str, frames: list[tuple[int, Path]], options: FitFilesOptions,
                source: str, follower: PeopleFollower | OnePersonFollower) -> list[tuple[int, Any]]:
    """A video's frame files fitted in frame order, in the demo's batches →
    (person number, estimate without vertices) per person found. With a
    ``PeopleFollower``, up to ``max_people`` per frame, numbered as the
    follower follows them; with a ``OnePersonFollower``, the one person it
    keeps to, numbered by stretch (0, then 1, … where another person takes
    the place of the one followed). A frame whose file cannot be read is a warning
    line (NoPersonError if no frame has anybody)."""
    from openhmr.demo import FittingNote, progress_bar, return_freed_memory, without_vertices
    from openhmr.demo.people import PeopleFollower
    from openhmr.errors import NoPersonError, UnreadableFrameError
    from openhmr.io.prediction import check_finite

    width, height = options.image_size
    total = frames[-1][0] + 1
    fitted: list[tuple[int, Any]] = []
    unreadable: list[tuple[int, str]] = []  # (frame, why) of keypoint files that cannot be read
    pending: list[tuple[Any, Any, int]] = []  # (crop transform, location, frame), the demo's batches
    window = predictor.video_window(options.batch_size)

    def flush() -> None:
        if pending:
            note = FittingNote(bar)
            preds = predictor.predict(None, [p[0] for p in pending], [p[1] for p in pending],
                                      [(source, p[2], (height, width)) for p in pending], done=note)
            note.clear()
            for (_, _, index), pred in zip(pending, preds):
                check_finite(pred, frame=index)  # as the demo's videos: nothing is written
            fitted.extend((location.person, pred)
                          for (_, location, _), pred in zip(pending, without_vertices(preds)))
            pending.clear()
            return_freed_memory()  # as the demo's videos: each window's temporaries go back

    with progress_bar(len(frames), name, "frame") as bar:
        for index, path in frames:
            bar.update(1)
            try:
                if isinstance(follower, PeopleFollower):
                    located = _locate(path, width, height, options.max_people, frame=True)
                else:
                    keep = follower
                    located = _locate(path, width, height, frame=True,
                                      choose=lambda people: keep.choose(index, people))
                    located[0][1].person = keep.segment
            except UnreadableFrameError as e:
                unreadable.append((index, str(e)))
                continue
            except NoPersonError:
                continue
            except InputError as e:
                raise InputError(f"frame {index}: {e}") from None
            if isinstance(follower, PeopleFollower):
                numbers = follower.assign(index, [location for _, location in located])
                for (_, location), person in zip(located, numbers):
                    location.person = person
            pending.extend((transform, location, index) for transform, location in located)
            if len(pending) >= window:  # a frame's people are never split
                flush()
        flush()
    _check_frames_read(name, bool(fitted), unreadable, total)
    return fitted


def _fit_video(predictor: Any, name: str, frames: list[tuple[int, Path]], options: FitFilesOptions) -> None:
    """A video's frame files, in order → ``<name>.npz``, as the demo writes a
    video's. A frame whose file has nobody is a frame without a body; frames
    with no file (up to the last one that has) too."""
    from openhmr.demo import check_free, posed_again, progress, remove_earlier_people, video_outputs
    from openhmr.demo.video import smooth_stretches, stretches_note
    from openhmr.demo.people import OnePersonFollower, PeopleFollower
    from openhmr.io.prediction import unplaced_note, write_video_npz

    fps = _sequence_fps(options)
    paths = {"npz": video_outputs(Path(options.out), name)["npz"]}
    check_free(paths, options.overwrite)
    source = frame_pattern(name, frames)  # the results' input
    total = frames[-1][0] + 1
    follower = OnePersonFollower(PeopleFollower(max_gap=max(1, int(round(fps)))))
    stretches: dict[int | None, list[Any]] = {}
    for stretch, pred in _fit_frames(predictor, name, frames, options, source, follower):
        stretches.setdefault(stretch, []).append(pred)
    found = sum(map(len, stretches.values()))
    if found < total:
        message(f"openhmr fit: warning: {name}: no person in {total - found} of {total} frames")
    note = stretches_note(stretches)
    if note:
        message(f"openhmr fit: warning: {name}: {note}")
    smoothing = options.smoothing
    preds = smooth_stretches(predictor.body, stretches, smoothing, fps)
    paths["npz"].parent.mkdir(parents=True, exist_ok=True)
    meshes = progress(posed_again(predictor.body, preds), len(preds), f"{name} npz", "frame")
    unplaced = write_video_npz(paths["npz"], preds, total, fps, smoothing=smoothing,
                               vertices=(p.vertices.astype(np.float32) for p in meshes))
    if unplaced:
        message(f"openhmr fit: warning: {name}: {unplaced_note(unplaced)}")
    if options.overwrite:
        removed = remove_earlier_people(Path(options.out), name, 0, source)
        if removed:
            message(f"openhmr fit: warning: {name}: {removed}")


def _fit_video_people(predictor: Any, name: str, frames: list[tuple[int, Path]],
                      options: FitFilesOptions) -> None:
    """A video's frame files with several people (``max_people`` > 1) →
    ``<name>_person<k>.npz`` per person followed, as the demo writes a video
    with ``--max-people`` (``openhmr.demo.run_video``)."""
    from openhmr.demo import PeopleFollower, check_free, remove_earlier_people, write_people_npz

    fps = _sequence_fps(options)
    out = Path(options.out)
    npz_of = lambda k: out / f"{name}_person{k}.npz"  # noqa: E731
    check_free({"npz": npz_of(1)}, options.overwrite)
    source = frame_pattern(name, frames)  # the results' input
    total = frames[-1][0] + 1
    follower = PeopleFollower(max_gap=max(1, int(round(fps))))
    people: dict[int, list[Any]] = {}
    for person, pred in _fit_frames(predictor, name, frames, options, source, follower):
        people.setdefault(person, []).append(pred)
    with_anybody = len({pred.frame for preds in people.values() for pred in preds})
    if with_anybody < total:
        message(f"openhmr fit: warning: {name}: no person in {total - with_anybody} of {total} frames")
    npz_of(1).parent.mkdir(parents=True, exist_ok=True)
    write_people_npz(predictor.body, people, npz_of, total, fps, options.smoothing,
                     options.overwrite)
    if options.overwrite:
        removed = remove_earlier_people(out, name, max(people), source)
        if removed:
            message(f"openhmr fit: warning: {name}: {removed}")
