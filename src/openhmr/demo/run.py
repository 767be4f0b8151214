"""``openhmr demo``'s run: every input read, located, cropped, predicted and
written, one at a time (see :mod:`openhmr.demo`)."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from openhmr.data.crop import CropTransform, scale_and_crop, scale_for_bbox
from openhmr.demo.options import MESH_FORMATS, METHODS, DemoOptions, video_smoothing
from openhmr.demo.outputs import (check_free, finished_earlier, image_outputs, person_outputs, possible_outputs,
                                  refuse_writing_inputs, remove_earlier_people, stale_line, video_outputs,
                                  write_image_outputs, write_people_files)
from openhmr.demo.predictors import FitPredictor, HMRPredictor, Predictor, load_anny, load_hmr
from openhmr.demo.report import FittingNote, Timer, progress_bar, warn
from openhmr.demo.sources import (SEARCH_EVERY, BoxSource, DetectorSource, OpenPoseSource, PersonLocation,
                                  PersonSource, TightCropSource, parse_bbox)
from openhmr.demo.video import run_video
from openhmr.devices import require_device
from openhmr.errors import InputError, OpenHMRError
from openhmr.inference.backends import BACKENDS
from openhmr.inference.predictor import Predictor as BackendPredictor
from openhmr.io.images import InputItem, collect_inputs, read_image, video_info
from openhmr.io.output_paths import check_output_folder, committed_together
from openhmr.io.prediction import Prediction
from openhmr.progress import message


def build_person_source(options: DemoOptions, method: str = "hmr") -> PersonSource:
    """One of --bbox, --openpose, --detect (two are refused), else the whole image.

    A fit needs keypoints, so for ``fit`` and ``hmr+fit`` the detector is the
    default and a box alone is refused.
    """
    if options.search_every is not None and options.search_every < 1:
        raise InputError(f"--search-every must be at least 1, got {options.search_every}")
    source = _person_source(options, method)
    if options.search_every is not None:
        if not isinstance(source, DetectorSource):
            warn("--search-every is used only with the detector (not with --bbox, --openpose "
                 "or a whole-image crop)")
        elif not options.track:
            warn("--search-every is not used with --no-tracking (every frame is searched as a photo)")
    if not options.world_landmarks and method != "hmr" and not isinstance(source, DetectorSource):
        warn("--no-world-landmarks is used only with the detector (OpenPose's keypoints have no 3D landmarks)")
    return source


def _person_source(options: DemoOptions, method: str) -> PersonSource:
    given = [name for name, value in (("--bbox", options.bbox is not None),
                                      ("--openpose", options.openpose is not None),
                                      ("--detect", options.detect)) if value]
    if len(given) > 1:  # in every method: one of them would be dropped unseen
        both = "all" if len(given) > 2 else "both"
        raise InputError(f"{', '.join(given[:-1])} and {given[-1]} {both} say where the person is; "
                         "give one of them")
    if options.bbox is not None:
        if method != "hmr":
            raise InputError(f"--method {method} fits keypoints, which --bbox does not give; "
                             "use --openpose or --detect")
        box = parse_bbox(options.bbox)
        scale_for_bbox(box)  # a box of zero size fails now, not once per input
        return BoxSource(box)
    if options.openpose is not None:
        return OpenPoseSource(Path(options.openpose), fitted=method != "hmr")
    if options.detect or method != "hmr":
        DetectorSource.check_available("--detect" if options.detect else
                                        f"--method {method}{' (the default)' if options.method is None else ''} "
                                        "without --openpose (finding people)")
        video_mode = options.video_mode
        if video_mode is None:
            # BlazePose's video mode filters the landmarks over time, which suits a
            # causal pipeline; the whole-clip smoother needs each frame's own errors.
            video_mode = video_smoothing(options) != "clip"
        every = SEARCH_EVERY if options.search_every is None else options.search_every
        return DetectorSource(track=options.track, video_mode=video_mode, search_every=every)
    return TightCropSource()


def resolve_method(options: DemoOptions) -> str:
    """--method, or the default: HMR when weights are given, else the open fit."""
    method = options.method
    if method is None:
        method = "hmr" if options.weights is not None or options.smpl is not None else "fit"
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method in ("hmr", "hmr+fit"):
        from openhmr.io.hmr_weights import require_weights_file, weights_made_for

        # weights trained with Anny drive Anny: they take no SMPL file
        if options.weights is not None:
            require_weights_file(options.weights)  # a missing file is said as such, not as a missing --smpl
        anny = options.weights is not None and weights_made_for(options.weights) == "anny"
        missing = " and ".join(f for f, v in (("--weights", options.weights), ("--smpl", options.smpl or anny))
                               if not v)
        if missing:
            raise InputError(f"--method {method} needs {missing} (HMR weights and an SMPL model file); "
                             "without them, use the open default --method fit")
    return method


def build_predictor(options: DemoOptions, method: str, expected_crops: int | None = None) -> Predictor:
    """The predictor for ``method``; ``expected_crops`` (images plus video
    frames, times --max-people, if known: at most so many crops) lets
    ``--backend auto`` skip compiling for a small job."""
    device = require_device(options.device)
    if options.backend not in BACKENDS:
        raise InputError(f"unknown backend {options.backend!r}; available: {', '.join(BACKENDS)}")
    if method in ("hmr", "hmr+fit"):
        if options.weights is None:  # resolve_method refuses it
            raise InputError(f"--method {method} needs --weights")
        model: torch.nn.Module | BackendPredictor
        model, body = load_hmr(options.weights, options.smpl, device)
        if options.backend != "torch":
            from openhmr.inference import load_predictor

            model = load_predictor(model, backend=options.backend, device=device, expected_crops=expected_crops)
        hmr = HMRPredictor(model, body, device, options.backend)
        if method == "hmr":
            if not options.world_landmarks:
                warn("--no-world-landmarks is not used by --method hmr (nothing is fitted)")
            if options.noise_px is not None:
                warn("--noise-px is not used by --method hmr (nothing is fitted)")
            if getattr(options.fit_config, "upright_sigma", None) is not None:
                warn("--upright is not used by --method hmr (nothing is fitted)")
            if options.jumps is not None:
                warn(f"--{'' if options.jumps else 'no-'}jumps is not used by --method hmr (nothing is fitted)")
            return hmr
        return FitPredictor(body, method, hmr, options.fit_config, options.track,
                            side_by_side=video_smoothing(options) != "causal",
                            world_landmarks=options.world_landmarks, noise_px=options.noise_px)
    if options.weights is not None:
        warn("--weights is not used by --method fit")
    if options.backend not in ("auto", "torch"):  # the command's default and DemoOptions'
        warn(f"--backend {options.backend} is not used by --method fit (no network runs)")
    if options.smpl is not None:
        from openhmr.body.smpl import SMPL

        body = SMPL(options.smpl)
    else:
        body = load_anny()
    # a causal run's fits must not depend on later frames: one frame after another
    return FitPredictor(body.to(device), method, None, options.fit_config, options.track,
                        side_by_side=video_smoothing(options) != "causal",
                        world_landmarks=options.world_landmarks, noise_px=options.noise_px)


@dataclass
class _Pending:
    """A photo's person waiting for its batch: the crop, where it came from and its output files."""

    item: InputItem
    image: np.ndarray | None  # kept for the pictures only: a batch of large photos is large
    image_size: tuple[int, int]  # (H, W)
    crop: np.ndarray
    transform: CropTransform
    location: PersonLocation
    paths: dict[str, Path]
    person: int | None = None  # 1, 2, … when the photo's people are written apart


def run_demo(options: DemoOptions) -> int:
    """Process every input; return the exit code (0, or 1 if any input failed)."""
    if options.mesh_format not in MESH_FORMATS:
        raise InputError(f"unknown mesh format {options.mesh_format!r}; choose one of {', '.join(MESH_FORMATS)}")
    method = resolve_method(options)
    source = build_person_source(options, method)
    if options.max_people < 1:
        raise InputError(f"--max-people must be at least 1, got {options.max_people}")
    if options.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {options.batch_size}")
    if options.noise_px is not None and not (math.isfinite(options.noise_px) and options.noise_px > 0):
        raise InputError(f"--noise-px must be a positive number of pixels, got {options.noise_px:g}")
    if options.overwrite and options.skip_existing:
        raise InputError("--overwrite and --skip-existing exclude each other")
    if (method != "hmr" and options.jumps is not None and options.world_landmarks
            and isinstance(source, DetectorSource)):
        # The jumps choose between depths that project alike, which 3D landmarks already tell apart.
        warn(f"--{'' if options.jumps else 'no-'}jumps is used only for fits from 2D alone: with the "
             "detector, add --no-world-landmarks")
    if options.max_people > 1 and isinstance(source, (BoxSource, TightCropSource)):
        raise InputError(f"--max-people {options.max_people} needs people to be found: use --openpose "
                         "or --detect (a --bbox or the whole image as a crop is one person)")
    earlier_pictures: list[Path] = []
    items = collect_inputs(list(options.inputs), skipped=earlier_pictures)
    if earlier_pictures:
        warn(f"skipped {len(earlier_pictures)} picture(s) an earlier openhmr run wrote in the "
             f"input folder(s) ({earlier_pictures[0]}{', …' if len(earlier_pictures) > 1 else ''})")
    if not items:
        raise InputError("no input images or videos found")
    if options.mesh_format_given and all(item.kind == "video" for item in items):  # folders of videos too
        warn("--mesh-format is not used for videos (a video's outputs are its .npz and overlay video)")
    if all(item.kind == "image" for item in items):
        video_only = [flag for flag, given in (("--smoothing", options.smoothing is not None),
                                               ("--no-tracking", not options.track)) if given]
        if video_only:  # as for the other options a run does not use
            warn(f"{' and '.join(video_only)} {'is' if len(video_only) == 1 else 'are'} used only with videos")
    out = Path(options.out)
    check_output_folder(out)
    failures = 0
    timer = Timer()

    def fail(item: InputItem, error: Exception) -> None:
        nonlocal failures
        failures += 1
        text = str(error) if isinstance(error, OpenHMRError) else f"{type(error).__name__}: {error}"
        message(f"openhmr demo: error: {item.path}: {text}")

    # Inputs that cannot work are reported before the model is loaded (which
    # may take seconds), and the rest are counted for the backend's choice.
    usable: list[InputItem] = []
    crops: int | None = 0  # None once a video's length is unknown: a long job, for all we know
    finished = 0  # inputs an earlier run finished, passed by with --skip-existing
    inputs = frozenset(item.path.resolve() for item in items)
    for item in items:
        if options.skip_existing and finished_earlier(out, item.name, item.kind, str(item.path),
                                                      options.max_people > 1, options.render,
                                                      options.mesh_format):
            finished += 1
            continue
        try:
            refuse_writing_inputs(possible_outputs(out, item.name, item.kind, options.max_people,
                                                   options.mesh_format), inputs)
            frames = _precheck(item, out, options, source)
            # up to --max-people crops a photo or frame
            crops = None if crops is None or frames is None else crops + frames * options.max_people
            usable.append(item)
        except InputError as e:
            fail(item, e)
    if finished:
        print(f"openhmr demo: {finished} of {len(items)} input(s) passed by: an earlier run finished "
              f"their outputs (--skip-existing)", file=sys.stderr)
    images = [i for i in usable if i.kind == "image"]
    videos = [i for i in usable if i.kind == "video"]
    if not usable:
        if failures:
            print(f"openhmr demo: {failures} of {len(items)} input(s) failed", file=sys.stderr)
        return 1 if failures else 0
    predictor = build_predictor(options, method, crops)
    if not getattr(predictor.body, "has_faces", True):
        # HMR's checkpoint carries SMPL's arrays but not its faces (convert-tf --smpl-out)
        if options.render or options.mesh_format == "glb":
            ways = [w for w, needed in (("--no-render", options.render),
                                        ("--mesh-format obj or ply", options.mesh_format == "glb")) if needed]
            raise InputError(f"--smpl {options.smpl} has no mesh faces (a model converted from HMR's "
                             "checkpoint carries none), so no body can be "
                             f"{'drawn' if options.render else 'written as glTF'}: pass an official SMPL "
                             f"file for its faces, or {' and '.join(ways)}")
        warn(f"--smpl {options.smpl} has no mesh faces: the mesh files hold its vertices only")
    pending: list[_Pending] = []
    # Photos count as done once fitted and written (or failed), not when read:
    # a batch's fit is most of the time.
    bar = progress_bar(len(images), "images", "img")

    def flush() -> None:
        if not pending:
            return
        batch = list(pending)
        pending.clear()
        write_batch(batch)  # reports its photos' own failures; what escapes stops the run
        bar.update(len({id(p.item) for p in batch}))

    def write_batch(batch: list[_Pending]) -> None:
        note = FittingNote(bar)
        try:
            preds = predictor.predict(
                np.stack([p.crop for p in batch]), [p.transform for p in batch],
                [p.location for p in batch],
                [(str(p.item.path), None, p.image_size) for p in batch], done=note)
        except Exception as e:  # noqa: BLE001 - one bad batch must not stop the others
            photos = {id(p.item): p.item for p in batch}
            if len(photos) > 1:  # whose fault? each photo again on its own
                for key in photos:
                    write_batch([p for p in batch if id(p.item) == key])
                return
            fail(next(iter(photos.values())), e)
            return
        finally:
            note.clear()
        # One photo's entries are consecutive: a person alone, or all its people.
        groups: list[list[tuple[_Pending, Prediction]]] = []
        for p, pred in zip(batch, preds):
            pred.person = p.person
            if groups and p.person is not None and groups[-1][0][0].item is p.item:
                groups[-1].append((p, pred))
            else:
                groups.append([(p, pred)])
        finished = 0
        for group in groups:
            first = group[0][0]
            try:
                # A photo's files take their names together: stopped half-way, it leaves none.
                with committed_together():
                    shared = None
                    if first.person is not None:
                        shared = write_people_files(first.image, [q for _, q in group], first.paths,
                                                    options.mesh_format, options.render)
                    # Person 1 last: its json tells --skip-existing that the photo is finished.
                    stale: list[Path] = []
                    for p, pred in reversed(group):
                        stale += write_image_outputs(p.image, pred, p.paths, options.mesh_format,
                                                     options.render, shared)
                if stale:
                    warn(f"{first.item.path}: {stale_line(stale)}")
                if options.overwrite:
                    count = 0 if first.person is None else len(group)
                    removed = remove_earlier_people(out, first.item.name, count, str(first.item.path),
                                                    take_overlay=not options.render)
                    if removed:
                        warn(f"{first.item.path}: {removed}")
                finished += 1
            except Exception as e:  # noqa: BLE001
                fail(first.item, e)
        timer.record(finished)
        timer.photos += finished

    try:
        for item in images:
            try:
                people: list[tuple[int | None, PersonLocation, dict[str, Path]]]
                if options.max_people > 1:
                    image = read_image(item.path)
                    located = source.locate_all(image, item, options.max_people)
                    people = [(k, loc, person_outputs(out, item.name, k, options.mesh_format))
                              for k, loc in enumerate(located, 1)]
                else:
                    paths = image_outputs(out, item.name, options.mesh_format)
                    check_free(paths, options.overwrite)
                    image = read_image(item.path)
                    people = [(None, source.locate(image, item), paths)]
                entries = []
                for person, location, paths in people:
                    check_free(paths, options.overwrite)
                    crop, transform = scale_and_crop(image, location.scale, location.center)
                    entries.append(_Pending(item, image if options.render else None,
                                            (image.shape[0], image.shape[1]), crop, transform, location,
                                            paths, person))
                pending.extend(entries)  # all of a photo's people, or none of them
            except Exception as e:  # noqa: BLE001 - report and go on with the next input
                fail(item, e)
                bar.update(1)
                continue
            # HMR's first image goes alone, so that the warm-up is one image's
            # worth; a fit has no warm-up worth the name, and its batches are
            # --batch-size from the start, as 'openhmr fit' makes them. A photo's
            # people stay in one batch, which may then exceed --batch-size.
            limit = options.batch_size if method != "hmr" or timer.warm_end is not None else 1
            if len(pending) >= limit:
                flush()
        flush()
    finally:
        bar.close()

    for item in videos:
        try:
            run_video(item, out, options, source, predictor, timer)
        except Exception as e:  # noqa: BLE001
            fail(item, e)
        finally:
            if isinstance(source, DetectorSource):
                source.end_video()

    if timer.photos or timer.videos:  # something was written (a failed video counts frames only)
        print(f"openhmr demo: {timer.summary()}; outputs in {out}", file=sys.stderr)
    if failures:
        print(f"openhmr demo: {failures} of {len(items)} input(s) failed", file=sys.stderr)
    return 1 if failures else 0


def _precheck(item: InputItem, out: Path, options: DemoOptions, source: PersonSource) -> int | None:
    """Fail now for an input that is missing, unreadable as a video, without
    keypoints where they come from files, or whose outputs exist (without
    --overwrite); otherwise its number of frames (1 for an image, the
    container's count for a video, None if the container does not say)."""
    if item.kind == "video":
        if isinstance(source, OpenPoseSource):
            source.check_video(item)
        paths = video_outputs(out, item.name)
        if options.max_people > 1:
            paths["npz"] = out / f"{item.name}_person1.npz"
        check_free(paths, options.overwrite)
        return video_info(item.path).frame_count or None
    if not item.path.exists():
        raise InputError("image not found")  # the report names the path
    if options.max_people > 1:  # how many people is known only once they are found
        check_free(person_outputs(out, item.name, 1, options.mesh_format), options.overwrite)
    else:
        check_free(image_outputs(out, item.name, options.mesh_format), options.overwrite)
    return 1
