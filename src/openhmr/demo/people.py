"""Who is who from frame to frame, in a video with several people."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from openhmr.demo.sources import PersonLocation


def _keypoint_box(location: PersonLocation) -> np.ndarray:
    """(x0, y0, x1, y1) of a location's confident keypoints, image pixels."""
    kp = np.asarray(location.keypoints, dtype=np.float64)
    seen = kp[kp[:, 2] > 0.2, :2]
    if len(seen) < 2:
        seen = kp[:, :2]
    return np.concatenate([seen.min(axis=0), seen.max(axis=0)])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class PeopleFollower:
    """Who is who from frame to frame: each frame's people are matched to the
    people followed so far by the overlap (IoU) of their keypoint boxes with
    where each is expected — its box when last seen, moved on by the
    velocity it had then (so two people crossing keep their numbers) —
    greedily from the largest overlap. A match needs an IoU of at least
    ``min_iou`` and the person seen within the last ``max_gap`` frames;
    anyone unmatched is a new person, numbered 1, 2, … in order of first
    appearance."""

    min_iou: float = 0.3
    max_gap: int = 10
    # person → (frame last seen, box then, box velocity per frame)
    _last: dict[int, tuple[int, np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def assign(self, frame: int, locations: list[PersonLocation]) -> list[int]:
        """The person number of each of a frame's locations (and records them)."""
        boxes = [_keypoint_box(loc) for loc in locations]
        expected = {k: box + velocity * (frame - seen)
                    for k, (seen, box, velocity) in self._last.items() if frame - seen <= self.max_gap}
        pairs = sorted(((_iou(box, at), i, k) for i, box in enumerate(boxes) for k, at in expected.items()),
                       reverse=True)
        numbers: dict[int, int] = {}
        for overlap, i, k in pairs:
            if overlap < self.min_iou:
                break
            if i not in numbers and k not in numbers.values():
                numbers[i] = k
        for i, box in enumerate(boxes):
            if i in numbers:
                seen, old, _ = self._last[numbers[i]]
                velocity = (box - old) / (frame - seen)
            else:
                numbers[i] = max(self._last, default=0) + 1
                velocity = np.zeros(4)
            self._last[numbers[i]] = (frame, box, velocity)
        return [numbers[i] for i in range(len(boxes))]
