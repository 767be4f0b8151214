"""OpenPose keypoint files: the people of one JSON file, the most confident first.

OpenPose writes one file per image (``<stem>_keypoints.json``) or per video
frame (``<stem>_<frame, 12 digits>_keypoints.json``) with a ``people`` list;
each person's keypoints are flat (x, y, confidence) triples in image pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from openhmr.body.keypoints import COCO18, MAX_CONFIDENCE, get_set
from openhmr.errors import SPECIAL_FILE, InputError, NoPersonError, UnreadableFrameError, is_special_file

OPENPOSE_LAYOUTS = {25 * 3: "body25", 18 * 3: "coco18"}

# Per layout, its points of COCO-18's body (every body model's keypoints match
# them): BODY_25 adds the mid-hip and the feet.
_BODY_POINTS = {layout: np.array([name in COCO18.names for name in get_set(layout).names])
                for layout in OPENPOSE_LAYOUTS.values()}


def check_inside(keypoints: np.ndarray, width: int, height: int, hint: str) -> None:
    """InputError if a confident keypoint lies beyond the ``width`` × ``height``
    image by more than 5 % of its longer side: the keypoints were found in
    another image, or one of another size. ``hint`` ends the message."""
    confident = keypoints[keypoints[:, 2] > 0, :2]
    margin = 0.05 * max(width, height)
    if ((confident < -margin) | (confident > np.array([width, height]) + margin)).any():
        raise InputError(f"keypoints lie outside the {width}×{height} image; {hint}")


def check_confidences(keypoints: np.ndarray, source: str | Path | None = None) -> None:
    """InputError if a confidence exceeds what a fit takes (a percentage, say),
    said here, where the file (``source``) or a video's frame can be named,
    rather than by the fit of a whole batch of frames."""
    highest = float(np.nanmax(np.asarray(keypoints, np.float64)[:, 2], initial=0.0))
    if highest > MAX_CONFIDENCE:
        of = f" of {source}" if source is not None else ""
        raise InputError(f"keypoint confidences{of} must lie in [0, 1] (up to {MAX_CONFIDENCE:g} counts as 1), "
                         f"got up to {highest:.3g} (a percentage? divide by 100)")


def read_openpose_people(path: str | Path, conf_threshold: float = 0.2) -> list[tuple[np.ndarray, str]]:
    """Every person of an OpenPose JSON file, the most confident first.

    Accepts the old ``pose_keypoints`` and the current ``pose_keypoints_2d``
    keys, BODY_25 (75 values) and COCO-18 (54 values) layouts. As the
    original, each person is scored by the mean confidence of its keypoints
    above ``conf_threshold``; a person with no keypoint of COCO-18's body
    above it (BODY_25's mid-hip and feet alone place no body), or whose such
    keypoints all lie at one place (no box to place a crop on), is left out.

    Returns:
        per person ((K, 3) keypoints x, y (image pixels), confidence; the set
        name "body25" or "coco18"), by decreasing score (ties in file order).
    Raises:
        InputError: missing or malformed file, unknown layout.
        NoPersonError: no person with a keypoint above ``conf_threshold``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"OpenPose file {path} {SPECIAL_FILE}" if is_special_file(path)
                         else f"OpenPose file not found: {path}")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:  # Recursion: nested too deep
        raise InputError(f"cannot read OpenPose file {path}: {e or type(e).__name__}") from None
    people = doc.get("people") if isinstance(doc, dict) else None
    if not isinstance(people, list):
        raise InputError(f"{path} is not an OpenPose file (no 'people' list)")
    scored: list[tuple[float, np.ndarray, str]] = []
    with_keypoints = 0
    for person in people:
        if not isinstance(person, dict):
            continue
        values = person.get("pose_keypoints_2d", person.get("pose_keypoints"))
        if values is None:
            continue
        with_keypoints += 1
        if not isinstance(values, list):
            raise InputError(f"{path}: a person's keypoints are not a list of numbers")
        if len(values) == 0:
            continue
        layout = OPENPOSE_LAYOUTS.get(len(values))
        if layout is None:
            raise InputError(
                f"{path}: a person has {len(values)} keypoint values; expected 75 (BODY_25) "
                "or 54 (COCO-18)"
            )
        try:
            kp = np.asarray(values, dtype=np.float64).reshape(-1, 3)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past float's range
            raise InputError(f"{path}: keypoints are not numbers") from None
        confident = (kp[:, 2] > conf_threshold) & np.isfinite(kp[:, :2]).all(axis=1)
        # A glimpse (one confident point, or several at one place: OpenPose's faint
        # partial people) gives no box to place a crop on; it is no person to fit.
        # Its body points count, not BODY_25's mid-hip and feet: a pair of feet
        # places no body, and SMPL's keypoints have none of those to match.
        body = confident & _BODY_POINTS[layout]
        if body.any() and np.ptp(kp[body, :2], axis=0).any():
            scored.append((float(kp[confident, 2].mean()), kp, layout))
    if people and not with_keypoints:
        raise InputError(f"{path} is not an OpenPose file: none of its {len(people)} people has "
                         "'pose_keypoints_2d'")
    if not scored:
        raise NoPersonError(f"{path}: no person with body keypoints above confidence {conf_threshold} "
                            "at more than one place")
    order = sorted(range(len(scored)), key=lambda i: -scored[i][0])  # stable: ties keep file order
    return [(scored[i][1], scored[i][2]) for i in order]


def read_frame_people(path: str | Path, conf_threshold: float = 0.2) -> list[tuple[np.ndarray, str]]:
    """:func:`read_openpose_people` for one frame of a video: a file that
    cannot be read raises :class:`UnreadableFrameError` (a frame without a
    body, reported), not the InputError that fails a photo."""
    try:
        return read_openpose_people(path, conf_threshold)
    except NoPersonError:
        raise
    except InputError as e:
        raise UnreadableFrameError(str(e)) from None


def unreadable_frames_note(unreadable: list[tuple[int, str]], total: int) -> str:
    """The line that reports a video's unreadable frame files (frame index,
    the reader's message), the first one named."""
    index, message = unreadable[0]
    return (f"the keypoint files of {len(unreadable)} of {total} frames could not be read; they count "
            f"as frames without a body (frame {index}: {message}{'; …' if len(unreadable) > 1 else ''})")


def read_openpose(path: str | Path, conf_threshold: float = 0.2) -> tuple[np.ndarray, str]:
    """The most confident person of an OpenPose JSON file (the original's
    choice): the first of :func:`read_openpose_people`, which see."""
    return read_openpose_people(path, conf_threshold)[0]
