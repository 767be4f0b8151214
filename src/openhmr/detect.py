"""Person detection with BlazePose (MediaPipe Pose, legacy ``solutions`` API).

BlazePose (Bazarevsky et al., 2020) finds the most prominent person in an
image and gives 33 landmarks (``openhmr.body.keypoints`` set ``blazepose33``):
2D image positions, 3D "world" positions in metres with the origin at the hip
centre, a visibility score per landmark, and a person mask.

Only the landmark model that ships inside the ``mediapipe`` wheel is used
(model_complexity 1, ``pose_landmark_full.tflite``); complexities 0 and 2
would be downloaded at run time, which openhmr never does. ``mediapipe`` is an
optional dependency (the ``demo`` extra); without it, :func:`detect_person`
raises :class:`DetectorUnavailableError`.

Several people: BlazePose gives one person per call. :func:`detect_people`
finds the others by detecting again on the image with the found people
erased (their person masks, widened, painted in the image's median colour),
until nobody more is found or a detection lies mostly on erased pixels (an
echo of someone already found); then the same in overlapping windows of
half the image's longer side, for people too small for the detector's
224×224 view of the whole image. One person (:func:`find_person`) is looked
for in those windows too when the whole image shows nobody.

Videos: :class:`PersonTracker` runs BlazePose in its video mode on one
video's frames in order — it follows the person from frame to frame instead
of detecting it anew, and smooths the landmarks. On a still person it moves
the world landmarks about 3× less from frame to frame than per-image
detection (13 against 36 mm in a test clip).

Frames: image pixels (x right, y down, pixel i covering [i, i+1));
world landmarks are camera-aligned (x right, y down, z away from the camera)
and hip-centred, the frame HMR's bodies have under its mean root rotation.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from openhmr.errors import InputError, NoPersonError, OpenHMRError

#: Shorter image side below which BlazePose is not run: its person detector
#: works at 224×224 and a person needs a few pixels per limb to be seen.
MIN_IMAGE_SIDE = 32
#: The only landmark model bundled in the mediapipe 0.10 wheel ("full").
MODEL_COMPLEXITY = 1
INSTALL_HINT = "BlazePose needs the optional extra: pip install 'openhmr[demo]'"


class DetectorUnavailableError(OpenHMRError):
    """The person detector's package (mediapipe) is not installed."""


@dataclass
class Detection:
    """The one person BlazePose found.

    Attributes:
        box: (x0, y0, x1, y1) image pixels, the box of the landmarks with
            visibility above 0.5 (at least two, not all at one point, else
            the detection is no person), clipped to the image.
        keypoints2d: (33, 3) float32, ``blazepose33`` order: x, y image pixels
            and the landmark's visibility in [0, 1].
        keypoints3d: (33, 4) float32: x, y, z metres (hip-centred,
            camera-aligned: x right, y down, z away) and visibility.
        mask: (H, W) float32 person probability in [0, 1], or None.
        image_size: (height, width) of the image.
    """

    box: tuple[float, float, float, float]
    keypoints2d: np.ndarray
    keypoints3d: np.ndarray
    mask: np.ndarray | None
    image_size: tuple[int, int]

    @property
    def keypoint_set(self) -> str:
        return "blazepose33"


_POSE: dict[bool, Any] = {}


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence MediaPipe's C++ log lines (TFLite delegate and feedback-tensor
    notices, several per process), which bypass Python's logging; failures
    still surface as Python exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _new_pose_model(with_mask: bool, video: bool) -> Any:
    """A MediaPipe Pose solution: per image, or tracking a video's frames."""
    try:
        from mediapipe.python.solutions import pose as mp_pose
    except (ImportError, AttributeError, TypeError):
        # TypeError/AttributeError: a module entry set to None or a broken install.
        raise DetectorUnavailableError(INSTALL_HINT) from None
    with _quiet_native_stderr():
        return mp_pose.Pose(
            static_image_mode=not video,
            model_complexity=MODEL_COMPLEXITY,
            smooth_landmarks=video,
            enable_segmentation=with_mask,
            min_detection_confidence=0.5,
        )


def _pose_model(with_mask: bool) -> Any:
    """The per-image Pose solution, built once per process (per mask setting)."""
    if with_mask not in _POSE:
        _POSE[with_mask] = _new_pose_model(with_mask, video=False)
    return _POSE[with_mask]


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise InputError(f"the image must be an (H, W, 3) RGB array, got {shape}")
    if image.dtype != np.uint8:
        raise InputError(f"the image must be uint8 RGB, got dtype {image.dtype}")
    height, width = image.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise InputError(
            f"the image is too small for the person detector ({width}×{height} px; "
            f"the shorter side must be at least {MIN_IMAGE_SIDE} px)")
    return np.ascontiguousarray(image)


def detect_person(image: np.ndarray, with_mask: bool = True) -> Detection:
    """Find the most prominent person in an RGB image with BlazePose.

    Args:
        image: (H, W, 3) uint8 RGB.
        with_mask: also return BlazePose's person mask.
    Returns:
        The :class:`Detection`.
    Raises:
        DetectorUnavailableError: mediapipe is not installed.
        InputError: not an (H, W, 3) uint8 image, or shorter side < 32 px.
        NoPersonError: BlazePose found nobody, or is sure of fewer than two
            of the landmarks of what it found.
    """
    image = _check_image(image)
    model = _pose_model(with_mask)
    with _quiet_native_stderr():
        result = model.process(image)
    return _detection(result, image, with_mask)


#: A detection with more than this fraction of its visible landmarks on
#: erased pixels repeats someone already found.
ECHO_FRACTION = 0.5
#: A window's detection whose visible landmarks span a box this many times
#: wider than tall is not taken: on the test photos such detections were a
#: dog and the stones at a man's feet, read as a person lying down.
MAX_WINDOW_ASPECT = 1.5
#: BlazePose's shoulders and hips: a window's detection needs all four visible.
TORSO = [11, 12, 23, 24]
#: A detection around a video's previous box is that frame's person only if
#: its box overlaps the previous one by at least this intersection over
#: union: between frames at 25 fps a person's box keeps ~0.8-0.9 of it
#: (a walking man filmed by a panning camera: 0.83-0.91), while someone else
#: inside the grown region overlaps little (a woman seated beside him: 0.13).
NEAR_MIN_IOU = 0.3


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes (0 for empty ones)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def windows_beyond(height: int, width: int, searched: Sequence[float], more: Sequence[float]) -> tuple[float, ...]:
    """The window sizes of ``more`` that give a ``height`` × ``width`` image
    windows the sizes ``searched`` did not: on an elongated image the sizes
    meet at the short side, and a second search there would repeat the first."""
    seen = {w for fraction in searched for w in _windows(height, width, fraction)}
    kept = []
    for fraction in more:
        these = set(_windows(height, width, fraction))
        if not these <= seen:
            kept.append(fraction)
            seen |= these
    return tuple(kept)


def _windows(height: int, width: int, fraction: float = 0.5) -> list[tuple[int, int, int, int]]:
    """Square windows (x0, y0, x1, y1) of side min(H, W, fraction·max(H, W)),
    each overlapping its neighbours by half, covering the image in raster
    order: a person smaller than half a window lies whole inside one of them."""
    side = int(min(height, width, max(height, width) * fraction))
    if side < MIN_IMAGE_SIDE:
        return []

    def starts(length: int) -> list[int]:
        count = max(1, int(np.ceil((length - side) / (side / 2))) + 1)
        return sorted({int(round(i * (length - side) / max(1, count - 1))) for i in range(count)})

    return [(x, y, x + side, y + side) for y in starts(height) for x in starts(width)]


def _erase(work: np.ndarray, erased: np.ndarray, person: np.ndarray, margin: float,
           fill: np.ndarray) -> None:
    """Paint ``person`` (H, W) bool, widened by ``margin`` pixels, in ``fill``
    on ``work`` (H, W, 3), and mark it in ``erased`` (H, W), in place.

    The widening is a distance transform over the person's bounding box plus
    the margin only, so its cost does not grow with the margin or the photo
    (a dilation with a kernel of the margin's size took 4 s per person on an
    11-megapixel photo)."""
    import cv2  # mediapipe's own dependency

    rows, cols = np.nonzero(person)
    if len(rows) == 0:
        return
    pad = int(np.ceil(margin)) + 1
    height, width = person.shape
    y0, y1 = max(0, rows.min() - pad), min(height, rows.max() + pad + 1)
    x0, x1 = max(0, cols.min() - pad), min(width, cols.max() + pad + 1)
    outside = (~person[y0:y1, x0:x1]).astype(np.uint8)
    near = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= margin
    erased[y0:y1, x0:x1] |= near
    work[y0:y1, x0:x1][near] = fill


def _around(box: tuple[float, float, float, float], height: int, width: int,
            grow: float = 0.5) -> tuple[int, int, int, int] | None:
    """``box`` grown by ``grow`` of its size on every side, clipped to the
    image; None when smaller than the detector's minimum."""
    x0, y0, x1, y1 = box
    dx, dy = grow * (x1 - x0), grow * (y1 - y0)
    region = (max(0, int(x0 - dx)), max(0, int(y0 - dy)),
              min(width, int(np.ceil(x1 + dx))), min(height, int(np.ceil(y1 + dy))))
    if min(region[2] - region[0], region[3] - region[1]) < MIN_IMAGE_SIDE:
        return None
    return region


#: Window sizes, as fractions of the image's longer side, that
#: :func:`find_person` searches when the whole image shows nobody.
SMALL_PERSON_WINDOWS = (0.5, 0.25)
#: The most people :func:`find_person` finds in windows of one size before
#: it takes the tallest.
SMALL_PEOPLE_SEARCHED = 8


def find_person(image: np.ndarray, with_mask: bool = False,
                windows: Sequence[float] = SMALL_PERSON_WINDOWS) -> Detection:
    """The most prominent person, as :func:`detect_person`; when the whole
    image's 224×224 view shows nobody, people too small for it are looked
    for in overlapping square windows (:func:`detect_people`'s search and
    rules), of each of ``windows``' sizes in turn until someone is found,
    and the tallest of them (its landmarks' box) is returned, with its mask.

    BlazePose's whole view misses a person below roughly 40 % of the image's
    longer side: a person pasted into a plain 1600×1200 image was found with
    a landmark box 615 px tall and missed at 473 px. Windows of half the
    longer side found it down to 250 px (16 %), and of a quarter down to
    150 px (9 %; at 115 px missed, at 85 px found again). Each smaller size
    costs more calls, paid only when the larger ones found nobody: on that
    image, 13 ms for the whole view, 100–250 ms more for the 6 windows of
    800 px (the more when someone is found, as the search goes on for
    others), and 450–600 ms more for the 35 of 400 px.
    """
    try:
        return detect_person(image, with_mask)
    except NoPersonError as nobody:
        missed = nobody
    height, width = image.shape[:2]
    for fraction in windows_beyond(height, width, (), windows):  # each window once
        try:
            found = detect_people(image, SMALL_PEOPLE_SEARCHED, whole=False, windows=(fraction,))
        except NoPersonError as nobody:
            missed = nobody
            continue
        return max(found, key=lambda d: d.box[3] - d.box[1])
    raise missed


def find_person_near(image: np.ndarray, box: tuple[float, float, float, float]) -> Detection:
    """The person expected around ``box`` (x0, y0, x1, y1), image pixels (a
    video's previous frame): one call on the box grown by half its size on
    every side, with :func:`detect_people`'s rules for a part of the image.
    One call costs about as much as the whole view, so a person too small
    for that view, once found in a window, is followed at that price.

    Raises:
        NoPersonError: nobody there.
    """
    return detect_people(image, 1, near=[box], search=False, whole=False, windows=())[0]


def detect_people(image: np.ndarray, max_people: int,
                  near: Sequence[tuple[float, float, float, float]] = (),
                  search: bool = True, whole: bool = True,
                  windows: Sequence[float] = (0.5,)) -> list[Detection]:
    """Up to ``max_people`` people in an RGB image.

    BlazePose finds one person per call, so each call runs on the image with
    everyone found so far erased: their person masks (probability > 0.5),
    widened by 5 % of their box's diagonal so that no outline is left to be
    found again, are painted in the image's median colour. The calls:

    1. ``near`` (a video's previous frame): one call on each box grown by
       half its size on every side, where that person should still be; a
       detection there counts only if its box overlaps that box by an IoU of
       ``NEAR_MIN_IOU`` (else it is someone else, left to the search);
    2. with ``search``, or when someone of ``near`` was not found again: on
       the whole image, until nobody more is found or more than half of a
       detection's visible landmarks (visibility above 0.5) fall on erased
       pixels (an echo of someone found); then the same in overlapping
       square windows (``_windows``), where people too small for the whole
       image's 224×224 view are large enough.

    A detection in a part of the image (1, or a window) that touches one of
    the part's inner edges is a cut-off person, left for a part that holds
    it whole; one more than ``MAX_WINDOW_ASPECT`` times wider than tall, or
    without a visible torso (both shoulders and hips), is not taken (a person
    lying down or half hidden must be found in the whole image).

    Args:
        image: (H, W, 3) uint8 RGB.
        max_people: the most people to return (≥ 1).
        near: (x0, y0, x1, y1) boxes, image pixels, where people are expected.
        search: search the whole image and the windows (see 2).
        whole: with ``search``, look at the whole image before the windows
            (False: the windows only, when the whole image is known to show
            nobody).
        windows: the windows' sizes, fractions of the image's longer side
            (``_windows``), searched in this order.
    Returns:
        The detections (at least one), ``near``'s first, each as
        :func:`detect_person` gives it with its person mask, in the image's
        pixels; a part's detection has the world landmarks BlazePose gave
        for the part.
    Raises:
        as :func:`detect_person` when not even one person is found.
    """
    if max_people < 1:
        raise InputError(f"max_people must be at least 1, got {max_people}")
    image = _check_image(image)
    height, width = image.shape[:2]
    work = image.copy()
    erased = np.zeros((height, width), dtype=bool)
    fills: list[np.ndarray] = []  # the erasing colour, computed when first needed
    found: list[Detection] = []
    parts = [(region, box) for region, box in ((_around(box, height, width), box) for box in near)
             if region is not None]

    def look(x0: int, y0: int, x1: int, y1: int,
             expected: tuple[float, float, float, float] | None = None) -> Detection | None:
        """One call on the part, the detection in image pixels if it is taken
        (around ``expected``, only if it overlaps it: ``NEAR_MIN_IOU``)."""
        try:
            detection = detect_person(work[y0:y1, x0:x1], with_mask=True)
        except NoPersonError:
            return None
        if detection.mask is None:
            return None
        kp = detection.keypoints2d.copy()
        kp[:, :2] += (x0, y0)
        seen = kp[kp[:, 2] > 0.5, :2]
        if len(seen) == 0:
            return None
        cols = np.clip(seen[:, 0].astype(int), 0, width - 1)
        rows = np.clip(seen[:, 1].astype(int), 0, height - 1)
        if found and erased[rows, cols].mean() > ECHO_FRACTION:
            return None
        if (x1 - x0, y1 - y0) == (width, height):
            # The rules below are for a part of the image; around an expected box
            # the whole image keeps the overlap rule alone.
            if expected is not None and box_iou(detection.box, expected) < NEAR_MIN_IOU:
                return None
            return detection
        edge = 0.02 * max(x1 - x0, y1 - y0)
        inner = [(x0 > 0, seen[:, 0] < x0 + edge), (y0 > 0, seen[:, 1] < y0 + edge),
                 (x1 < width, seen[:, 0] > x1 - edge), (y1 < height, seen[:, 1] > y1 - edge)]
        if any(is_inner and close.any() for is_inner, close in inner):
            return None
        span = seen.max(axis=0) - seen.min(axis=0)
        if span[0] > MAX_WINDOW_ASPECT * span[1] or (kp[TORSO, 2] < 0.5).any():
            return None
        bx0, by0, bx1, by1 = detection.box
        box = (bx0 + x0, by0 + y0, bx1 + x0, by1 + y0)
        if expected is not None and box_iou(box, expected) < NEAR_MIN_IOU:
            return None
        mask = np.zeros((height, width), dtype=np.float32)
        mask[y0:y1, x0:x1] = detection.mask
        return Detection(box=box, keypoints2d=kp,
                         keypoints3d=detection.keypoints3d, mask=mask, image_size=(height, width))

    def take(detection: Detection) -> None:
        assert detection.mask is not None  # look() returns only detections with a mask
        found.append(detection)
        if len(found) == max_people:  # nobody more is looked for: nothing to erase (a video's follower)
            return
        if not fills:
            fills.append(np.median(image.reshape(-1, 3), axis=0).astype(np.uint8))
        bx0, by0, bx1, by1 = detection.box
        _erase(work, erased, detection.mask > 0.5, 0.05 * float(np.hypot(bx1 - bx0, by1 - by0)), fills[0])

    for part, expected in parts:  # one call each: the person expected there
        if len(found) == max_people:
            break
        detection = look(*part, expected=expected)
        if detection is not None:
            take(detection)
    if search or len(found) < len(near):
        # On an elongated image the sizes meet at the short side: each window once.
        windowed = list(dict.fromkeys(w for fraction in windows for w in _windows(height, width, fraction)))
        for part in ([(0, 0, width, height)] if whole else []) + windowed:
            while len(found) < max_people:
                detection = look(*part)
                if detection is None:
                    break
                take(detection)
            if len(found) == max_people:
                break
    if not found:
        raise NoPersonError(f"no person was found in the {width}×{height} image")
    return found


class PersonTracker:
    """BlazePose in video mode, for the frames of one video in order.

    After the first detection each frame's landmarks are searched near the
    previous frame's and smoothed over time (MediaPipe's own filter), which
    steadies them; when the person is lost, the next frame detects afresh.
    Use one tracker per video: ``tracker(frame)`` as :func:`detect_person`,
    and ``close()`` it (or use it in a ``with`` block) when the video is
    done: its graph holds ~100 MB and two threads, which mediapipe frees only
    on close (a tracker dropped unclosed is closed when collected).
    """

    def __init__(self, with_mask: bool = False) -> None:
        import weakref

        self.with_mask = with_mask
        self._model = _new_pose_model(with_mask, video=True)
        self._close = weakref.finalize(self, self._model.close)

    def __call__(self, image: np.ndarray) -> Detection:
        """The person in the next frame; raises as :func:`detect_person`."""
        image = _check_image(image)
        with _quiet_native_stderr():
            result = self._model.process(image)
        return _detection(result, image, self.with_mask)

    def close(self) -> None:
        """Free the graph (once; later calls do nothing)."""
        self._close()

    def __enter__(self) -> PersonTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _detection(result: Any, image: np.ndarray, with_mask: bool) -> Detection:
    """MediaPipe's result for ``image`` as a :class:`Detection`."""
    if result.pose_landmarks is None:
        height, width = image.shape[:2]
        raise NoPersonError(f"no person was found in the {width}×{height} image")
    height, width = image.shape[:2]
    lm = result.pose_landmarks.landmark
    # MediaPipe gives x, y normalised by the image width and height.
    kp2d = np.array([[p.x * width, p.y * height, p.visibility] for p in lm], dtype=np.float32)
    world = result.pose_world_landmarks.landmark
    kp3d = np.array([[p.x, p.y, p.z, p.visibility] for p in world], dtype=np.float32)
    mask = None
    if with_mask and result.segmentation_mask is not None:
        mask = np.asarray(result.segmentation_mask, dtype=np.float32)
    # The landmarks BlazePose is sure of (visibility above 0.5, as the crop
    # takes them): fewer than two, or all at one point, give no box to crop,
    # and such a glimpse (a hand and a head at the edge) is no person to fit.
    seen = kp2d[kp2d[:, 2] > 0.5, :2]
    if len(seen) < 2 or not (np.ptp(seen, axis=0) > 0).any():
        raise NoPersonError(f"no person was found in the {width}×{height} image (BlazePose is sure of "
                            f"{len(seen)} of its 33 landmarks only)")
    x0, y0 = np.clip(seen.min(axis=0), 0, [width, height])
    x1, y1 = np.clip(seen.max(axis=0), 0, [width, height])
    return Detection(
        box=(float(x0), float(y0), float(x1), float(y1)),
        keypoints2d=kp2d,
        keypoints3d=kp3d,
        mask=mask,
        image_size=(height, width),
    )
