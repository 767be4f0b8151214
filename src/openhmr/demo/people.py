"""Who is who from frame to frame, in a video with several people."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from openhmr.demo.sources import PersonLocation, within_reach

_TORSO = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
# Colour histogram: hue × saturation bins for coloured pixels, value bins for
# grey ones (white, grey and black clothes have no meaningful hue).
_HUE_BINS, _SAT_BINS, _GREY_BINS = 16, 4, 4
_GREY_SATURATION = 0.2  # below this saturation a pixel counts as grey
_GRID = 24  # the torso is sampled on a _GRID × _GRID grid


def _keypoint_box(location: PersonLocation) -> np.ndarray:
    """(x0, y0, x1, y1) of a location's confident keypoints, image pixels."""
    kp = np.asarray(location.keypoints, dtype=np.float64)
    seen = kp[kp[:, 2] > 0.2, :2]
    if len(seen) < 2:
        seen = kp[:, :2]
    return np.concatenate([seen.min(axis=0), seen.max(axis=0)])


def _centre(box: np.ndarray) -> np.ndarray:
    """(x, y) of a box (x0, y0, x1, y1)."""
    return (box[:2] + box[2:]) / 2.0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _soft_bins(x: np.ndarray, n: int, wrap: bool) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation between bin centres: for a coordinate ``x`` in
    bin units (bin i's centre at i), the lower bin and the upper bin's weight.
    Without ``wrap``, coordinates beyond the first or last centre go wholly
    to that bin."""
    if not wrap:
        x = np.clip(x, 0.0, n - 1.0)
    low = np.floor(x)
    return low.astype(int) % n if wrap else low.astype(int), x - low


def torso_colours(image: np.ndarray, location: PersonLocation, min_conf: float = 0.5) -> np.ndarray | None:
    """What a person wears: the colour histogram of the torso.

    The torso is the quadrilateral of the shoulders and hips (a missing
    corner completed as a parallelogram from the other three), sampled on a
    regular grid over its inner part (20–80 % along both sides), so that a
    bending or turned person is sampled on the body, not on the background.

    Args:
        image: (H, W, 3) uint8 RGB frame.
        location: the person, with keypoints in a set that names shoulders and hips.
        min_conf: confidence above which a keypoint counts.
    Returns:
        (16·4 + 4,) histogram summing to 1: hue (16 bins) × saturation (4) of
        the samples with saturation ≥ 0.2, value (4 bins) of the others; None
        when fewer than three of the four torso points are confident.
    """
    from openhmr.body.keypoints import get_set

    if location.keypoints is None or location.keypoint_set is None:
        return None
    names = get_set(location.keypoint_set).names
    if not all(n in names for n in _TORSO):
        return None
    kp = np.asarray(location.keypoints, dtype=np.float64)[[names.index(n) for n in _TORSO]]
    seen = (kp[:, 2] > min_conf) & np.isfinite(kp[:, :2]).all(1)
    if seen.sum() < 3:
        return None
    corners = kp[:, :2].copy()  # left shoulder, right shoulder, left hip, right hip
    if not seen.all():  # each corner is the sum of its two neighbours minus the opposite one
        missing = int(np.flatnonzero(~seen)[0])
        a, b, opposite = {0: (1, 2, 3), 1: (0, 3, 2), 2: (0, 3, 1), 3: (1, 2, 0)}[missing]
        corners[missing] = corners[a] + corners[b] - corners[opposite]
    u = np.linspace(0.2, 0.8, _GRID)
    across, down = np.meshgrid(u, u)  # shoulder → shoulder, shoulder → hip
    across, down = across.reshape(-1, 1), down.reshape(-1, 1)
    top = (1 - across) * corners[0] + across * corners[1]
    bottom = (1 - across) * corners[2] + across * corners[3]
    points = np.rint((1 - down) * top + down * bottom).astype(int)
    h, w = image.shape[:2]
    inside = (points[:, 0] >= 0) & (points[:, 0] < w) & (points[:, 1] >= 0) & (points[:, 1] < h)
    if inside.sum() < _GRID:
        return None
    rgb = image[points[inside, 1], points[inside, 0], :3].astype(np.float64) / 255.0
    value = rgb.max(1)
    chroma = value - rgb.min(1)
    saturation = np.where(value > 0, chroma / np.maximum(value, 1e-12), 0.0)
    r, g, b = rgb.T
    safe = np.maximum(chroma, 1e-12)
    hue = np.where(value == r, (g - b) / safe, np.where(value == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    hue = (hue / 6.0) % 1.0
    # Soft binning: each sample is shared between its two nearest bins along
    # each axis, so a small change of light moves weight gradually.
    grey = saturation < _GREY_SATURATION
    counts = np.zeros(_HUE_BINS * _SAT_BINS + _GREY_BINS)
    h_lo, h_w = _soft_bins(hue * _HUE_BINS - 0.5, _HUE_BINS, wrap=True)
    s_lo, s_w = _soft_bins((saturation - _GREY_SATURATION) / (1 - _GREY_SATURATION) * _SAT_BINS - 0.5,
                           _SAT_BINS, wrap=False)
    for dh in (0, 1):
        for ds in (0, 1):
            hb = (h_lo + dh) % _HUE_BINS
            sb = np.clip(s_lo + ds, 0, _SAT_BINS - 1)
            weight = np.where(dh, h_w, 1 - h_w) * np.where(ds, s_w, 1 - s_w)
            np.add.at(counts, (hb * _SAT_BINS + sb)[~grey], weight[~grey])
    v_lo, v_w = _soft_bins(value * _GREY_BINS - 0.5, _GREY_BINS, wrap=False)
    for dv in (0, 1):
        vb = np.clip(v_lo + dv, 0, _GREY_BINS - 1)
        np.add.at(counts, _HUE_BINS * _SAT_BINS + vb[grey], np.where(dv, v_w, 1 - v_w)[grey])
    return counts / counts.sum()


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya coefficient of two histograms: 1 for equal ones, 0 for
    ones with no bin in common."""
    return float(np.sqrt(a * b).sum())


@dataclass
class PeopleFollower:
    """Who is who from frame to frame.

    Each frame's people are first matched to the people followed so far by
    the overlap (IoU) of their keypoint boxes with where each is expected —
    its box when last seen, moved on by the velocity its centre had then (so
    two people crossing keep their numbers) — greedily from the largest
    overlap; given the frame, someone seen the frame before whose motion is
    not known yet (just appeared) is matched within reach of their box (its
    longer side's half around it) if dressed alike, since a narrow box's IoU
    fails at a runner's first step. The velocity is the first step seen, then
    averaged over frames
    (``velocity_memory``): a single frame's, of a person standing still, is
    the keypoints' tremble, and over a gap of many frames it sent the
    expected box away. (Expecting a person also where last seen, unmoved,
    mends that too, but gives each of two people crossing the other's old
    place to match: they swapped numbers two to six times as often.) A match
    needs an IoU of at least ``min_iou`` and the person seen within the last
    ``max_gap`` frames.

    Given the frame, someone left unmatched is then compared by what they
    wear (:func:`torso_colours`) with the people not seen in this frame,
    however long ago they were last seen, so that a person who was hidden, or
    left and came back elsewhere, gets their number again: the most similar
    pair first, when its similarity is at least ``min_similarity``. A
    person's colours are the running mean of their last ``appearance_frames``
    frames. Anyone still unmatched is a new person, numbered 1, 2, … in order
    of first appearance.
    """

    min_iou: float = 0.3
    max_gap: int = 10
    # Bhattacharyya coefficients on the reference photos: one person's torso
    # 0.97–1.0 in a pan, 0.61–0.94 with the light scaled by 0.6–1.25; different
    # people 0.00–0.74, the highest between a white and a grey top.
    min_similarity: float = 0.85
    appearance_frames: int = 30
    # weight of the velocity so far in its running average (the newest step's is 1 − this)
    velocity_memory: float = 0.7
    # person → (frame last seen, box then, velocity of the box's centre, px per frame; None: not known yet)
    _last: dict[int, tuple[int, np.ndarray, np.ndarray | None]] = field(default_factory=dict, repr=False)
    # person → torso colour histograms of their last appearance_frames frames, and their mean
    _colours: dict[int, tuple[deque[np.ndarray], np.ndarray]] = field(default_factory=dict, repr=False)

    def assign(self, frame: int, locations: list[PersonLocation], image: np.ndarray | None = None) -> list[int]:
        """The person number of each of a frame's locations (and records them).

        Args:
            frame: the frame's index.
            locations: the people found in it.
            image: the (H, W, 3) uint8 RGB frame, for matching people by their
                colours; without it, only by where they are.
        """
        boxes = [_keypoint_box(loc) for loc in locations]
        expected = {k: box if velocity is None else box + np.tile(velocity * (frame - seen), 2)
                    for k, (seen, box, velocity) in self._last.items() if frame - seen <= self.max_gap}
        pairs = sorted(((_iou(box, at), i, k) for i, box in enumerate(boxes) for k, at in expected.items()),
                       reverse=True)
        numbers: dict[int, int] = {}
        for overlap, i, k in pairs:
            if overlap < self.min_iou:
                break
            if i not in numbers and k not in numbers.values():
                numbers[i] = k
        colours = [torso_colours(image, loc) if image is not None else None for loc in locations]
        # Someone seen the frame before whose motion is not known yet is expected
        # unmoved; a standing person's keypoint box is narrow (~0.3 of their height),
        # so a runner's first step fails the IoU, and with it the step the velocity
        # is learnt from (matched by colour, as returning, they never had one). Within
        # reach and dressed alike, they are the same person: the most alike first,
        # then the nearest (nearest first swapped two similarly dressed people side
        # by side, the step of each nearer the other's box). By place alone (no
        # image) not: a person missed for a frame while someone appears beside them
        # looks the same, and the newcomer took their number.
        near = sorted((-similarity(colour, self._colours[k][1]),
                       float(np.linalg.norm(_centre(box) - _centre(self._last[k][1]))), i, k)
                      for i, (box, colour) in enumerate(zip(boxes, colours))
                      if i not in numbers and colour is not None
                      for k, (seen, old, velocity) in self._last.items()
                      if seen == frame - 1 and velocity is None and k not in numbers.values()
                      and k in self._colours and within_reach(old, box))
        for unlike, _, i, k in near:
            if -unlike < self.min_similarity:
                break
            if i not in numbers and k not in numbers.values():
                numbers[i] = k
        absent = [k for k in self._colours if k not in numbers.values()]
        alike = sorted(((similarity(colour, self._colours[k][1]), i, k) for i, colour in enumerate(colours)
                        if i not in numbers and colour is not None for k in absent), reverse=True)
        returning: set[int] = set()
        for score, i, k in alike:
            if score < self.min_similarity:
                break
            if i not in numbers and k not in numbers.values():
                numbers[i] = k
                returning.add(i)
        for i, box in enumerate(boxes):
            if i in numbers and i not in returning:
                seen, old, before = self._last[numbers[i]]
                step = (_centre(box) - _centre(old)) / (frame - seen)
                # the first step seen is the velocity; later ones are averaged into it
                velocity = step if before is None else self.velocity_memory * before + (1.0 - self.velocity_memory) * step
            else:
                if i not in numbers:
                    numbers[i] = max(self._last, default=0) + 1
                velocity = None  # a new or returning person: no motion known yet
            self._last[numbers[i]] = (frame, box, velocity)
            colour = colours[i]
            if colour is not None:
                recent = self._colours.get(numbers[i], (deque(maxlen=self.appearance_frames), colour))[0]
                recent.append(colour)  # the oldest goes: a change of clothes or light is learnt in full
                self._colours[numbers[i]] = (recent, np.mean(recent, axis=0))
        return [numbers[i] for i in range(len(boxes))]


@dataclass
class OnePersonFollower:
    """The one person of a video whose frames' keypoints may hold several
    (OpenPose's): the person chosen so far for as long as they are seen
    (:class:`PeopleFollower` says who is who), else the frame's most
    confident, who is followed from then on.

    Each frame's most confident person alone, the photo's choice, jumps
    between two people whose confidences trade places from frame to frame;
    the fits, each continuing the frame before's and then smoothed, end up
    on nobody, between the two. The demo and ``openhmr fit --sequence``
    call it without the frame (by place alone), so that both keep to the
    same person, the latter having no image.
    """

    follower: PeopleFollower
    #: How many times another person has taken the place of the one followed:
    #: the stretches of frames of one person (``PersonLocation.person``),
    #: fitted and smoothed apart, are 0, 1, …
    segment: int = 0
    _followed: int | None = field(default=None, repr=False)
    # the people seen in a frame beside the one followed
    _beside: set[int] = field(default_factory=set, repr=False)

    def choose(self, frame: int, locations: list[PersonLocation], image: np.ndarray | None = None) -> int:
        """The index of the one person among a frame's ``locations`` (most
        confident first, at least one)."""
        numbers = self.follower.assign(frame, locations, image)
        if self._followed not in numbers:
            # Another person only if seen beside the one followed: a new number alone is the same
            # person found again (a frame of few keypoints, or back after the follower forgot them).
            if numbers[0] in self._beside:
                self.segment += 1
            self._followed, self._beside = numbers[0], set()
        self._beside.update(n for n in numbers if n != self._followed)
        return numbers.index(self._followed)
