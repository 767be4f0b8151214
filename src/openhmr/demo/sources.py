"""Person sources: where the person (or the people) is in an image.

A source turns an image (or a video frame) into a list of :class:`PersonLocation` —
the crop's scale and centre, and keypoints when it has them: a fixed box
(``--bbox``), an OpenPose file (``--openpose``), the BlazePose detector
(``--detect``), or the whole image taken as a tight crop, as the original
demo does without a keypoint file.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from openhmr.data.crop import scale_for_bbox, scale_for_keypoints, scale_for_tight_crop
from openhmr.demo.report import warn
from openhmr.errors import InputError, NoPersonError
from openhmr.io.images import InputItem
from openhmr.io.openpose import check_confidences, check_inside, read_frame_people, read_openpose_people


@dataclass
class PersonLocation:
    """A person in an image: the crop's scale and centre, and any keypoints.

    Attributes:
        scale: crop pixels per image pixel requested for the crop.
        center: (2,) crop centre (x, y), image pixels.
        source: "bbox", "openpose", "detect" or "tight".
        keypoints: optional (K, 3) image pixels + confidence in ``keypoint_set`` order.
        keypoint_set: name of that set (``openhmr.body.keypoints``).
        detection: the detector's ``openhmr.detect.Detection`` (with 3D
            landmarks) when the detector found the person.
        person: in a video with several people, which person this is
            (``PeopleFollower``); a fit continues that person's. In a video
            of one person, the stretch of frames with the same person (0,
            1, … where another takes the place of the one followed): a fit
            continues, and the smoothing runs, within a stretch only.
    """

    scale: float
    center: np.ndarray
    source: str
    keypoints: np.ndarray | None = None
    keypoint_set: str | None = None
    detection: Any = None  # openhmr.detect.Detection, with 3D landmarks
    person: int | None = None  # the person followed (1, 2, …), or one person's stretch (0, 1, …)


class PersonSource(Protocol):
    """Where the person is. ``frame`` is the video frame's index (None for an
    image); a source raises :class:`NoPersonError` when a frame has nobody.
    ``locate_all`` gives up to ``max_people`` people of a photo or frame, in
    its search order: the one ``locate`` gives first when the whole view finds
    someone (where only windows find people, they come in the windows' order,
    and ``locate`` takes the tallest); a box or a tight crop is always one person."""

    name: str

    def locate(self, image: np.ndarray, item: InputItem, frame: int | None = None) -> PersonLocation: ...

    def locate_all(self, image: np.ndarray, item: InputItem, max_people: int,
                   frame: int | None = None) -> list[PersonLocation]: ...


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``"x0,y0,x1,y1"`` (image pixels) → four floats; InputError if malformed."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(np.isfinite(values)):
        raise InputError(f"--bbox must be four numbers x0,y0,x1,y1 in image pixels, got {text!r}")
    return values


@dataclass
class BoxSource:
    """A fixed person box (x0, y0, x1, y1) in image pixels, for every input."""

    box: tuple[float, float, float, float]
    name: str = "bbox"

    def locate(self, image: np.ndarray, item: InputItem, frame: int | None = None) -> PersonLocation:
        h, w = image.shape[:2]
        x0, y0, x1, y1 = self.box
        scale, center = scale_for_bbox(self.box)
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            raise InputError(f"the box {x0:g},{y0:g},{x1:g},{y1:g} lies outside the {w}×{h} image")
        return PersonLocation(scale, center, "bbox")

    def locate_all(self, image: np.ndarray, item: InputItem, max_people: int,
                   frame: int | None = None) -> list[PersonLocation]:
        return [self.locate(image, item)]


#: How --openpose keypoints outside the image are explained.
_ELSEWHERE = "were the keypoints of {} found in this image?"


@dataclass
class OpenPoseSource:
    """Keypoints from OpenPose: one JSON file for every image, or a folder as
    OpenPose's ``--write_json`` writes it: image ``x.png`` has
    ``x_keypoints.json``, frame i of video ``x.mp4`` has
    ``x_<i, 12 digits>_keypoints.json``."""

    path: Path
    name: str = "openpose"
    # the keypoints are fitted (--method fit|hmr+fit): confidences past a fit's range are
    # refused here, naming the file (HMR alone places its crop and never reads their scale)
    fitted: bool = False

    def file_for(self, item: InputItem, frame: int | None = None) -> Path:
        if not self.path.is_dir():
            return self.path
        if frame is None:
            return self.path / f"{item.path.stem}_keypoints.json"
        return self.path / f"{item.path.stem}_{frame:012d}_keypoints.json"

    def check_video(self, item: InputItem) -> None:
        """Fail up front unless the folder holds keypoints for ``item``'s frames."""
        if not self.path.is_dir():
            raise InputError(f"--openpose {self.path} is one image's keypoints; for the video "
                             f"{item.path} give the folder OpenPose's --write_json wrote for it, "
                             "or use --bbox or --detect")
        if not any(self.path.glob(f"{glob.escape(item.path.stem)}_{'[0-9]' * 12}_keypoints.json")):
            raise InputError(f"{self.path} holds no OpenPose keypoints for {item.path} (expected "
                             f"{self.file_for(item, 0).name}, … one file per frame)")

    def locate(self, image: np.ndarray, item: InputItem, frame: int | None = None,
               choose: Callable[[list[PersonLocation]], int] | None = None) -> PersonLocation:
        """The file's most confident person, or the one ``choose`` picks
        among them all (a video's person kept to: ``OnePersonFollower``)."""
        path = self.file_for(item, frame)
        if frame is not None and not path.is_file():
            raise NoPersonError(f"no OpenPose keypoints for frame {frame}: {path} is missing")
        people = (read_openpose_people if frame is None else read_frame_people)(path)
        if choose is None:
            people = people[:1]
        located = [PersonLocation(*scale_for_keypoints(kp), "openpose", kp, layout) for kp, layout in people]
        k = choose(located) if choose is not None else 0
        # only the person taken: someone else's keypoints do not stop the frame
        check_inside(people[k][0], image.shape[1], image.shape[0], _ELSEWHERE.format(path))
        if self.fitted:
            check_confidences(people[k][0], path)
        return located[k]

    def locate_all(self, image: np.ndarray, item: InputItem, max_people: int,
                   frame: int | None = None) -> list[PersonLocation]:
        path = self.file_for(item, frame)
        if frame is not None and not path.is_file():
            raise NoPersonError(f"no OpenPose keypoints for frame {frame}: {path} is missing")
        people = (read_openpose_people if frame is None else read_frame_people)(path)[:max_people]
        for keypoints, _ in people:
            check_inside(keypoints, image.shape[1], image.shape[0], _ELSEWHERE.format(path))
            if self.fitted:
                check_confidences(keypoints, path)
        return [PersonLocation(*scale_for_keypoints(kp), "openpose", kp, layout)
                for kp, layout in people]


#: Videos with the detector: frames between searches of the whole frame, for people
#: who came in or, while nobody is followed, for a person too small for the half windows.
SEARCH_EVERY = 10


def within_reach(before: Sequence[float] | np.ndarray, box: Sequence[float] | np.ndarray) -> bool:
    """Whether ``box``'s centre lies within ``before`` grown by half its longer
    side on every side (boxes x0, y0, x1, y1). BlazePose's tracker follows one
    person, but its boxes lag a fast walker and shrink to part of the body (a
    walker's 105-px box became 30 px wide, frames apart by 48 px): boxes of one
    person may then not overlap at all, so an IoU test would see someone new
    in every frame. Its jumps to someone else land further away."""
    reach = 0.5 * max(before[2] - before[0], before[3] - before[1])
    cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    return bool(before[0] - reach <= cx <= before[2] + reach and before[1] - reach <= cy <= before[3] + reach)


@dataclass
class DetectorSource:
    """The BlazePose detector (``openhmr.detect``, the ``demo`` extra).

    The crop is placed on its landmarks as on OpenPose keypoints, counting
    landmarks with visibility above 0.5 (BlazePose's own threshold, and the
    one ``openhmr.fit.fit_detection`` uses). With ``track``, a video's person
    is followed from frame to frame, in one of two ways:

    * ``video_mode`` False (the demo's with whole-clip smoothing): each frame
      is detected on its own, first around the previous frame's person (one
      call, :func:`openhmr.detect.find_person_near`), so each frame's
      landmarks have errors of their own, which the whole-clip smoother can
      tell from movement;
    * ``video_mode`` True (with causal or no smoothing): one
      :class:`openhmr.detect.PersonTracker` (BlazePose's video mode: the
      person followed and its landmarks smoothed, causally); a frame where it
      sees nobody is looked at around the previous frame's person.

    Where nobody is found there, the frame is searched as a photo is: the
    whole frame and the windows of half its longer side, and every
    ``search_every`` frames without anyone followed those of a quarter (a
    person too small for BlazePose's view of the whole frame is found in a
    window, then followed around where they were, one call a frame). Photos,
    and every frame without ``track``, are detected one by one
    (:func:`openhmr.detect.find_person`). Several people
    (``locate_all``) in a video with ``track`` are looked for first where
    they were in the previous frame (``openhmr.detect.detect_people``'s
    ``near``), and the whole frame is searched for newcomers every
    ``search_every`` frames, when someone is not found again, and in every
    frame while nobody is followed (the quarter windows, as for one person,
    only every ``search_every`` frames).
    """

    name: str = "detect"
    conf_threshold: float = 0.5
    track: bool = True
    video_mode: bool = False  # videos with track: BlazePose's tracker instead of frames detected apart
    search_every: int = SEARCH_EVERY  # videos: frames between searches of the whole frame
    _tracker: Any = field(default=None, repr=False)
    _tracked: str | None = field(default=None, repr=False)  # the video's name, unique in a run
    # the tracked video's last frame with a person, and that person's box
    _followed: tuple[int, tuple[float, float, float, float]] | None = field(default=None, repr=False)
    # the tracked video's one person: counted up where the person found is someone else
    _segment: int = field(default=0, repr=False)
    # video → (frame, the boxes of the people found in it), with several people
    _people: dict[str, tuple[int, list[tuple[float, float, float, float]]]] = field(
        default_factory=dict, repr=False)

    @staticmethod
    def check_available(needed_for: str = "--detect") -> None:
        """Fail once, up front, when mediapipe is not installed; ``needed_for``
        names what asked for the detector."""
        import importlib
        import importlib.util

        from openhmr.errors import MissingExtraError

        if importlib.util.find_spec("mediapipe") is None:
            raise InputError(f"{needed_for} needs the BlazePose detector: pip install 'openhmr[demo]'")
        try:  # installed but not loadable: said once, before anything loads, not once per input
            importlib.import_module("mediapipe.python.solutions.pose")
        except (ImportError, AttributeError, TypeError) as e:
            # TypeError: protobuf's "Descriptors cannot be created directly" (a version mismatch);
            # ImportError: a missing system library such as libGL
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MissingExtraError(f"{needed_for} needs mediapipe, which is installed but cannot be "
                                    f"loaded ({reason})") from None

    def locate(self, image: np.ndarray, item: InputItem, frame: int | None = None) -> PersonLocation:
        from openhmr.detect import NEAR_MIN_IOU, PersonTracker, box_iou, find_person

        if self.track and item.kind == "video":
            # A new video, or the same file given again: nobody followed yet.
            if self._tracked != item.name:
                if self._tracker is not None:
                    self._tracker.close()
                self._tracker = PersonTracker() if self.video_mode else None
                self._tracked, self._followed, self._segment = item.name, None, 0
            detection = None
            if self._tracker is not None:
                try:
                    detection = self._tracker(image)
                except NoPersonError:
                    pass
            tracked = detection is not None
            if detection is None:
                detection = self._follow(image, frame)
            before = self._followed
            if before is not None and frame is not None and before[0] == frame - 1 and (
                    not within_reach(before[1], detection.box) if tracked
                    else box_iou(before[1], detection.box) < NEAR_MIN_IOU):
                # found elsewhere than the person of the frame before: someone else (the
                # whole-frame search's, or the tracker's jump), fitted and smoothed apart
                self._segment += 1
            self._followed = (frame, detection.box) if frame is not None else None
            location = self._location(detection)
            location.person = self._segment
            return location
        detection = find_person(image)
        return self._location(detection)

    def end_video(self) -> None:
        """A video's frames are done: free its tracker (BlazePose's video
        graph, ~100 MB and two threads)."""
        if self._tracker is not None:
            self._tracker.close()
        self._tracker, self._tracked, self._followed = None, None, None

    def _follow(self, image: np.ndarray, frame: int | None) -> Any:
        """A video frame's person, looked for in this frame alone: around the
        previous frame's person (one call), else in the whole frame and the
        windows of half its longer side, and of a quarter only every
        ``search_every`` frames (~0.5 s more) while nobody is followed.
        Raises NoPersonError."""
        from openhmr.detect import SMALL_PERSON_WINDOWS, find_person, find_person_near

        last = self._followed
        if last is not None and frame is not None and last[0] == frame - 1:
            try:
                return find_person_near(image, last[1])
            except NoPersonError:
                pass
        search_all = frame is None or frame % self.search_every == 0
        return find_person(image, windows=SMALL_PERSON_WINDOWS if search_all else SMALL_PERSON_WINDOWS[:1])

    def locate_all(self, image: np.ndarray, item: InputItem, max_people: int,
                   frame: int | None = None) -> list[PersonLocation]:
        from openhmr.detect import SMALL_PERSON_WINDOWS, detect_people, windows_beyond

        # The smaller windows, where they are others than the half windows' (an elongated image's are not).
        height, width = image.shape[:2]
        smaller = windows_beyond(height, width, SMALL_PERSON_WINDOWS[:1], SMALL_PERSON_WINDOWS[1:])
        if frame is None or not self.track:
            try:
                found = detect_people(image, max_people, windows=SMALL_PERSON_WINDOWS[:1])
            except NoPersonError:  # as for one person: smaller windows before giving up
                if not smaller:
                    raise
                found = detect_people(image, max_people, whole=False, windows=smaller)
            return [self._location(d) for d in found]
        last = self._people.get(item.name)
        near = last[1] if last is not None and last[0] == frame - 1 else []
        periodic = frame % self.search_every == 0
        try:
            # With nobody followed there is nowhere to look but everywhere: the
            # whole frame and the half windows, every frame, as for one person.
            detections = detect_people(image, max_people, near=near, search=periodic or not near)
        except NoPersonError:
            if not periodic or not smaller:
                raise
            # nobody, not even in the half windows: as on a photo, the quarter windows
            detections = detect_people(image, max_people, whole=False, windows=smaller)
        self._people[item.name] = (frame, [d.box for d in detections])
        return [self._location(d) for d in detections]

    def _location(self, detection: Any) -> PersonLocation:
        keypoints = np.asarray(detection.keypoints2d, dtype=np.float64)
        scale, center = scale_for_keypoints(keypoints, conf_threshold=self.conf_threshold)
        return PersonLocation(scale, center, "detect", keypoints, detection.keypoint_set, detection)


@dataclass
class TightCropSource:
    """No person information: the whole image is the person's crop (the
    original demo's default; its longer side is scaled to 224)."""

    name: str = "tight"
    _warned: set[Path] = field(default_factory=set, repr=False)

    def locate(self, image: np.ndarray, item: InputItem, frame: int | None = None) -> PersonLocation:
        if item.path not in self._warned:  # once per input, not per video frame
            self._warned.add(item.path)
            warn(f"{item.path}: no --bbox, --openpose or --detect; assuming the image is a tight "
                 "crop of one person (its longer side is scaled to 224 px)")
        scale, center = scale_for_tight_crop(*image.shape[:2])
        return PersonLocation(scale, center, "tight")

    def locate_all(self, image: np.ndarray, item: InputItem, max_people: int,
                   frame: int | None = None) -> list[PersonLocation]:
        return [self.locate(image, item)]
