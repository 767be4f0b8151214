"""``openhmr demo`` on a video: every frame's bodies, smoothed over time, one
``.npz`` per person followed and one overlay video.

Two passes over the video: the first estimates every frame's body (or
bodies), which are then smoothed over time; the second draws the overlay
video. Between them the estimates are held without their meshes and posed
again when written.
"""

from __future__ import annotations

import dataclasses
import errno
import heapq
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from openhmr.body.base import BodyModel
from openhmr.data.crop import CropTransform, scale_and_crop
from openhmr.demo.options import SMOOTHING, DemoOptions, video_smoothing
from openhmr.demo.outputs import (check_free, remove_earlier_people, render_overlay, render_people_overlay,
                                  video_outputs)
from openhmr.demo.people import OnePersonFollower, PeopleFollower
from openhmr.demo.predictors import Predictor, to_predictions
from openhmr.demo.report import FittingNote, Timer, progress, progress_bar, warn
from openhmr.demo.sources import OpenPoseSource, PersonLocation, PersonSource
from openhmr.errors import InputError, NoPersonError, UnreadableFrameError, require_opencv
from openhmr.io.images import InputItem, open_video, opencv_path
from openhmr.io.openpose import unreadable_frames_note
from openhmr.io.output_paths import committed_together, replacing
from openhmr.io.prediction import Prediction, check_finite, unplaced_note, write_video_npz

# A video's predictions are held without their meshes (``without_vertices``)
# and posed again, a chunk at a time, when the npz and the overlay video are
# written (``posed_again``): a mesh is 83 KB (SMPL) to 165 KB (Anny) per
# frame in float32, twice that as the float64 a Prediction holds, so an hour
# of video would not fit in memory otherwise.
_NO_VERTICES = np.zeros((0, 3))
REPOSE_CHUNK = 64


def return_freed_memory() -> bool:
    """Give the memory the C heap holds free back to the system (glibc's
    ``malloc_trim``); False where there is no such call (macOS, musl).

    Every batch of a video allocates and frees large temporaries (frames,
    crops, activations) while the small arrays kept per frame stay; glibc
    then keeps the freed pages, and a 1200-frame video grew by ~44 KB per
    frame though only ~4 KB per frame is held."""
    global _malloc_trim
    if _malloc_trim is None:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
        _malloc_trim = trim if trim is not None else False
    if _malloc_trim is False:
        return False
    _malloc_trim(0)
    return True


_malloc_trim: Any = None  # libc's malloc_trim once looked up, False if absent


def without_vertices(preds: list[Prediction]) -> list[Prediction]:
    """``preds`` with an empty (0, 3) ``vertices``; everything else kept."""
    return [dataclasses.replace(p, vertices=_NO_VERTICES) for p in preds]


def _repose_chunk(body: BodyModel, preds: list[Prediction], cams: np.ndarray, poses: np.ndarray,
                  betas: np.ndarray) -> list[Prediction]:
    """``preds`` (at most a chunk) posed with the given parameters, meshes included."""
    ref = next(b for b in body.buffers() if b.is_floating_point())  # not the faces
    cam_t, pose_t, betas_t = (torch.as_tensor(np.asarray(x), dtype=ref.dtype, device=ref.device)
                              for x in (cams, poses, betas))
    with torch.no_grad():
        posed = body(pose_t, betas_t)
    locations = [PersonLocation(p.crop.requested_scale, p.center, p.person_source) for p in preds]
    return to_predictions(body, cam_t, pose_t, betas_t, posed.vertices, posed.joints, posed.keypoints,
                        [p.crop for p in preds], locations,
                        [(p.input, p.frame, p.image_size) for p in preds], preds[0].method)


def repose(body: BodyModel, preds: list[Prediction], cams: np.ndarray, poses: np.ndarray,
           betas: np.ndarray) -> list[Prediction]:
    """``preds`` with new cameras (T, 3), poses (T, 3·J) and shapes (T, k):
    the body posed again and everything derived from it recomputed, except
    the meshes, which are left out (see :func:`posed_again`)."""
    out: list[Prediction] = []
    for start in range(0, len(preds), REPOSE_CHUNK):
        part = slice(start, start + REPOSE_CHUNK)
        out += without_vertices(_repose_chunk(body, preds[part], cams[part], poses[part], betas[part]))
    return out


def _frame_of(pred: Prediction) -> int:
    """A video's estimate's frame index (every estimate of a video has one)."""
    if pred.frame is None:
        raise ValueError(f"{pred.input}: an estimate from a video without its frame index")
    return pred.frame


def posed_again(body: BodyModel, preds: list[Prediction]) -> Iterator[Prediction]:
    """Each of ``preds``, in order, with its mesh: posed again from its own
    camera, pose and shape, ``REPOSE_CHUNK`` at a time."""
    for start in range(0, len(preds), REPOSE_CHUNK):
        chunk = preds[start:start + REPOSE_CHUNK]
        yield from _repose_chunk(body, chunk, np.stack([p.cam for p in chunk]),
                                 np.stack([p.pose for p in chunk]), np.stack([p.betas for p in chunk]))


def body_joints(body: BodyModel) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``body``'s joints as the smoothers take them (``openhmr.smoothing.JointsOf``):
    poses (T, 3·J) and shapes (T, k) → (T, J, 3) metres, ``REPOSE_CHUNK`` at a time."""
    ref = next(b for b in body.buffers() if b.is_floating_point())  # not the faces

    def joints_of(poses: np.ndarray, shapes: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(poses), REPOSE_CHUNK):
                pose_t, shape_t = (torch.as_tensor(np.asarray(x[start:start + REPOSE_CHUNK]), dtype=ref.dtype,
                                                   device=ref.device) for x in (poses, shapes))
                out.append(body.forward_keypoints(pose_t, shape_t).joints.double().cpu().numpy())
        return np.concatenate(out)

    return joints_of


def smooth_predictions(body: BodyModel, preds: list[Prediction], how: str, fps: float) -> list[Prediction]:
    """A video's estimates (in frame order) smoothed over time: ``how`` =
    "clip" (:func:`openhmr.smoothing.smooth_clip`, every frame at once) or
    "causal" (:class:`openhmr.smoothing.BodySmoother`, frame by frame)."""
    from openhmr.smoothing import BodySmoother, smooth_clip

    # A weak camera of scale s ≤ 0 (HMR's regressor does not bound it) has no image scale to
    # smooth: such a frame is left as it is and splits the frames around it into runs.
    kept = [p for p in preds if float(p.cam[0]) > 0]
    if len(kept) < len(preds):
        smoothed = iter(smooth_predictions(body, kept, how, fps))
        return [next(smoothed) if float(p.cam[0]) > 0 else p for p in preds]
    if not preds:
        return preds
    if how == "clip":
        cams, poses, betas = smooth_clip([_frame_of(p) for p in preds], np.stack([p.cam for p in preds]),
                                         np.stack([p.pose for p in preds]), np.stack([p.betas for p in preds]),
                                         [p.crop for p in preds], joints_of=body_joints(body))
    elif how == "causal":
        smoother = BodySmoother(fps, joints_of=body_joints(body))  # a frame without a body in between restarts it
        rows = [smoother(_frame_of(p), p.cam, p.pose, p.betas, p.crop) for p in preds]
        cams, poses, betas = (np.stack([r[i] for r in rows]) for i in range(3))
    else:
        raise ValueError(f"smoothing must be one of {SMOOTHING}, got {how!r}")
    return repose(body, preds, cams, poses, betas)


def smooth_stretches(body: BodyModel, stretches: dict[int | None, list[Prediction]], how: str,
                     fps: float) -> list[Prediction]:
    """One person's estimates of a video, in frame order, smoothed stretch by
    stretch (``how`` as :func:`smooth_predictions`, or "none"): a stretch
    (``PersonLocation.person``; None where the source tells none) holds the
    frames of one person, so that where another takes the place of the one
    followed, the two are not smoothed into one body between them."""
    out: list[Prediction] = []
    for key in sorted(stretches, key=lambda k: -1 if k is None else k):  # stretches follow each other
        preds = stretches[key]
        out.extend(preds if how == "none" else smooth_predictions(body, preds, how, fps))
    return out


def stretches_note(stretches: dict[int | None, list[Prediction]]) -> str | None:
    """A warning's words where a video's one person was replaced by another, or None."""
    starts = sorted(_frame_of(preds[0]) for key, preds in stretches.items() if preds and key)
    if not starts:
        return None
    shown = ", ".join(map(str, starts[:5])) + (", …" if len(starts) > 5 else "")
    return (f"another person took the place of the one followed at frame{'s' if len(starts) > 1 else ''} "
            f"{shown}; each person's frames are fitted and smoothed apart")


def write_people_npz(body: BodyModel, people: dict[int, list[Prediction]], npz_of: Callable[[int], Path],
                     total: int, fps: float, smoothing: str, overwrite: bool) -> None:
    """Each person's estimates (in frame order, without meshes) smoothed over
    its own frames and written to ``npz_of(person)`` with its meshes posed
    again (with a progress bar); ``people`` is updated with the smoothed
    estimates. Everyone is placed in the same one camera (``scene_*``), its
    focal length the median over all people and frames."""
    for person in sorted(people):
        check_free({"npz": npz_of(person)}, overwrite)
        if smoothing != "none":
            people[person] = smooth_predictions(body, people[person], smoothing, fps)
    focal = float(np.median([float(p.focal[0]) for preds in people.values() for p in preds]))
    with committed_together():  # all or none
        for person in sorted(people, reverse=True):  # person 1 last: it tells --skip-existing all are written
            meshes = progress(posed_again(body, people[person]), len(people[person]), npz_of(person).name,
                               "frame")
            unplaced = write_video_npz(npz_of(person), people[person], total, fps, smoothing=smoothing,
                                       vertices=(p.vertices.astype(np.float32) for p in meshes), person=person,
                                       scene_focal=focal)
            if unplaced:
                warn(f"{npz_of(person).name}: {unplaced_note(unplaced)}")


def run_video(item: InputItem, out: Path, options: DemoOptions, source: PersonSource,
              predictor: Predictor, timer: Timer | None = None) -> int:
    """Every frame of a video: one ``<name>.npz`` (arrays stacked over frames
    with a body) and ``<name>_overlay.mp4``. Returns the bodies found.

    Two passes over the video: the first estimates every frame's body, which
    are then smoothed over time (``options.smoothing``; unset: over the
    whole clip with tracking, not at all without); the second draws the
    overlay video.

    With ``options.max_people`` > 1, each frame's people (``locate_all``)
    are followed from frame to frame (:class:`PeopleFollower`); each
    person's fit continues its own previous frame's, its estimates are
    smoothed over its own frames, and it is written as
    ``<name>_person<k>.npz`` (the same arrays, plus ``person``); the one
    overlay video draws everyone. With one person, OpenPose's keypoints
    (which may hold several) are followed the same way, to keep to the
    person chosen (:class:`OnePersonFollower`)."""
    several = options.max_people > 1
    if isinstance(source, OpenPoseSource):
        source.check_video(item)
    paths = video_outputs(out, item.name)
    npz_of = lambda k: out / f"{item.name}_person{k}.npz"  # noqa: E731
    if several:
        paths["npz"] = npz_of(1)
    check_free(paths, options.overwrite)
    if options.render:
        opencv_path(paths["overlay"])  # now, not after the work
    info, frames = open_video(item.path)
    follower = PeopleFollower(max_gap=max(1, int(round(info.fps or 10))))
    one_of_several = OnePersonFollower(follower) if isinstance(source, OpenPoseSource) else None
    people: dict[int | None, list[Prediction]] = {}  # person followed (None: the one person) → bodies
    skipped = 0
    unreadable: list[tuple[int, str]] = []  # (frame, why) of keypoint files that cannot be read
    total = 0
    batch: list[tuple[int, np.ndarray, CropTransform, PersonLocation, tuple[int, int]]] = []
    window = predictor.video_window(options.batch_size)  # a tracked fit's chains need many frames

    def flush() -> None:
        if not batch:
            return
        note = FittingNote(bar)
        new_preds = predictor.predict(
            np.stack([b[1] for b in batch]), [b[2] for b in batch], [b[3] for b in batch],
            [(str(item.path), b[0], b[4]) for b in batch], done=note)
        note.clear()
        for b, pred in zip(batch, new_preds):
            check_finite(pred, frame=b[0])  # as a photo's: nothing is written
        for b, pred in zip(batch, without_vertices(new_preds)):
            people.setdefault(b[3].person, []).append(pred)
        frames_done = len({b[0] for b in batch})  # a frame's people are never split
        batch.clear()
        return_freed_memory()
        if timer is not None:
            timer.record(frames_done)

    # the bar counts frames read, and notes how far the fit of a window has got
    with progress_bar(info.frame_count or None, item.path.name, "frame") as bar:
        for index, frame in enumerate(frames):
            total += 1
            try:
                if several:
                    located = source.locate_all(frame, item, options.max_people, index)
                    for location, person in zip(located, follower.assign(index, located, frame)):
                        location.person = person
                elif isinstance(source, OpenPoseSource) and one_of_several is not None:
                    # OpenPose's files hold anybody in view: the person kept to, followed by
                    # place alone, as `openhmr fit --sequence` follows (it has no image)
                    keep = one_of_several
                    located = [source.locate(frame, item, index, lambda people: keep.choose(index, people))]
                    located[0].person = keep.segment
                else:
                    located = [source.locate(frame, item, index)]
            except UnreadableFrameError as e:
                unreadable.append((index, str(e)))
                located = []
            except NoPersonError:
                located = []
            if not located:
                skipped += 1
            for location in located:
                crop, transform = scale_and_crop(frame, location.scale, location.center)
                batch.append((index, crop, transform, location, (frame.shape[0], frame.shape[1])))
            bar.update(1)
            if len(batch) >= window:
                flush()
        flush()
    if total == 0:
        raise InputError("cannot read the video: " + (
            f"none of the {info.frame_count} frames its container announces could be decoded (is its first "
            "frame damaged?)" if info.frame_count > 1 else "it has no frames"))
    if info.note:
        warn(f"{item.path}: {info.note}")
    if total < info.frame_count - 1:  # containers' counts may be off by one
        # OpenCV stops at the first frame it cannot decode, and passes over frames a
        # recorder dropped (empty): the frames are numbered as decoded.
        warn(f"{item.path}: {total} of the {info.frame_count} frames the container announces could be "
             f"decoded (a damaged frame ends the reading, and dropped frames are passed over); the "
             f"outputs number the frames decoded, 0–{total - 1}")
    if not people:  # checked before any file or folder is made: a failed input leaves none
        raise NoPersonError("no person in any frame" + (f"; {unreadable_frames_note(unreadable, total)}"
                                                        if unreadable else ""))
    if unreadable:
        warn(f"{item.path}: {unreadable_frames_note(unreadable, total)}")
    if skipped:
        warn(f"{item.path}: no person in {skipped} of {total} frames")
    paths["npz"].parent.mkdir(parents=True, exist_ok=True)
    smoothing = video_smoothing(options)
    body = predictor.body
    posed: Iterator[Prediction]
    # The npz and the overlay take their names together: a run stopped while
    # drawing the overlay leaves neither, and --skip-existing does the video again.
    with committed_together():
        if several:
            followed = cast("dict[int, list[Prediction]]", people)  # follower.assign numbered every location
            write_people_npz(body, followed, npz_of, total, info.fps, smoothing, options.overwrite)
            posed = heapq.merge(*(posed_again(body, preds) for preds in followed.values()), key=_frame_of)
        else:
            preds = smooth_stretches(body, people, smoothing, info.fps)
            note = stretches_note(people)
            if note:
                warn(f"{item.path}: {note}")
            meshes = progress(posed_again(body, preds), len(preds), f"{item.path.name} npz", "frame")
            unplaced = write_video_npz(paths["npz"], preds, total, info.fps, smoothing=smoothing,
                                       vertices=(p.vertices.astype(np.float32) for p in meshes))
            if unplaced:
                warn(f"{item.path}: {unplaced_note(unplaced)}")
            posed = posed_again(body, preds)
        if options.render:
            write_overlay_video(item, paths["overlay"], posed)
    if options.overwrite:
        removed = remove_earlier_people(out, item.name, max(followed) if several else 0, str(item.path))
        if removed:
            warn(f"{item.path}: {removed}")
    if timer is not None:
        timer.record_video(total, total - skipped)
    return sum(len(preds) for preds in people.values())


class _OverlayUnwritable(Exception):
    """OpenCV could not open a writer for the overlay video."""


def write_overlay_video(item: InputItem, path: Path, preds: Iterable[Prediction]) -> None:
    """The video again with each frame's bodies drawn over it (plain frames
    where there is none); ``preds`` in frame order, with their meshes, one or
    more per frame (several are drawn with one z-buffer,
    :func:`render_people_overlay`). A rendering failure leaves the rest of
    the video plain. Written to a temporary name and renamed when whole, so
    an interrupted run leaves no half video."""
    try:
        with replacing(path) as tmp:
            _write_overlay_frames(item, tmp, preds)
    except _OverlayUnwritable:
        warn(f"{item.path}: cannot write {path}; no overlay video")


#: The overlay video's largest side, pixels: OpenCV's mp4v encoder refuses 8192 and more.
MP4V_MAX_SIDE = 8192


def _write_overlay_frames(item: InputItem, path: Path, preds: Iterable[Prediction]) -> None:
    cv2 = require_opencv("writing the overlay video")

    info, frames = open_video(item.path)
    # mp4v (MPEG-4 part 2) takes sides below 8192 px: an 8K video's overlay is drawn smaller
    shrink = min(1.0, (MP4V_MAX_SIDE - 1) / max(info.width, info.height))
    size = (info.width, info.height) if shrink == 1.0 else (
        max(2, int(info.width * shrink) // 2 * 2), max(2, int(info.height * shrink) // 2 * 2))
    writer = cv2.VideoWriter(opencv_path(path), cv2.VideoWriter.fourcc(*"mp4v"), info.fps, size)
    if not writer.isOpened():
        raise _OverlayUnwritable
    upcoming = iter(preds)
    pred = next(upcoming, None)
    written = 0
    try:
        for index, frame in enumerate(progress(frames, info.frame_count or None,
                                                f"{item.path.name} overlay", "frame")):
            picture = frame
            while pred is not None and _frame_of(pred) < index:  # not in this decoding: skip
                pred = next(upcoming, None)
            here = []
            while pred is not None and pred.frame == index:
                here.append(pred)
                pred = next(upcoming, None)
            if here:
                try:
                    if len(here) == 1:
                        picture, _ = render_overlay(frame, here[0])
                    else:
                        picture = render_people_overlay(frame, here)
                except Exception as e:  # noqa: BLE001 - keep the parameters
                    warn(f"{item.path}: rendering failed, overlay video shows plain frames "
                         f"({type(e).__name__}: {e})")
                    pred = None  # and pose no more bodies
            if size != (info.width, info.height):
                picture = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
            writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
            written = index + 1
    finally:
        writer.release()
    # OpenCV's writer reports no write error: a full disk leaves a video cut
    # short, without the index a player needs. Read back its frame count.
    check = cv2.VideoCapture(opencv_path(path))
    count = int(check.get(cv2.CAP_PROP_FRAME_COUNT)) if check.isOpened() else 0
    check.release()
    if count != written:
        full = shutil.disk_usage(path.parent).free < (1 << 20)
        raise OSError(errno.ENOSPC if full else errno.EIO,
                      f"the overlay video came out with {count} of its {written} frames"
                      + (" (no space left on the device)" if full else ""), str(path))
