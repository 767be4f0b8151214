"""What ``openhmr demo`` tells its user while it runs: warnings, progress
reports and the time per image."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import openhmr.progress
from openhmr.progress import Progress, track
from openhmr.progress import message as progress_message

T = TypeVar("T")


# The command whose name starts each warning: the demo's helpers also serve
# ``openhmr fit``, whose user should not read "openhmr demo" (see ``speaking_as``).
_speaker = "openhmr demo"


@contextmanager
def speaking_as(command: str) -> Iterator[None]:
    """Within the block, :func:`warn` names ``command`` ("openhmr fit")."""
    global _speaker
    before, _speaker = _speaker, command
    try:
        yield
    finally:
        _speaker = before


def warn(message: str) -> None:
    """One warning line on stderr, named after the command that runs."""
    progress_message(f"{_speaker}: warning: {message}")


def progress(iterable: Iterable[T], total: int | None, desc: str, unit: str) -> Iterator[T]:
    """``iterable`` with a progress report on stderr (:mod:`openhmr.progress`):
    a bar on a terminal, a line every so often elsewhere, and no closing line,
    since the demo ends with its own summary."""
    return track(iterable, desc, unit, total=total, leave=False)


def progress_bar(total: int | None, desc: str, unit: str) -> Progress:
    """A progress report advanced by hand with ``update``, as :func:`progress`;
    a ``with`` block closes it."""
    return openhmr.progress.progress_bar(total, desc, unit, leave=False)


class FittingNote:
    """A ``done`` callback for ``Predictor.predict`` that shows on a progress
    bar how far the call in flight has got ("fitting 40 %"): a tracked
    video's window of frames is one long call, during which the bar of
    frames read would otherwise stand still. ``clear()`` when it returns."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def __call__(self, finished: int, total: int) -> None:
        if finished < total:
            self.bar.set_postfix_str(f"fitting {100 * finished // total} %")

    def clear(self) -> None:
        self.bar.set_postfix_str("")


class Timer:
    """What the demo got through, and its time per image: photos, videos and
    their frames, timed after the first finished batch, which pays the
    one-off costs (first network call, allocator, lazy imports)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.warm_end: float | None = None
        self.warm_count = 0
        self.count = 0  # photos and frames timed
        self.photos = 0
        self.videos = 0
        self.frames = 0  # the videos' frames read
        self.frames_with_body = 0

    def record(self, finished: int) -> None:
        """``finished`` more photos or frames done (each photo with all its people)."""
        if finished <= 0:
            return
        self.count += finished
        if self.warm_end is None:
            self.warm_end = time.perf_counter()
            self.warm_count = finished

    def record_video(self, frames: int, with_body: int) -> None:
        """A video done: ``frames`` read, ``with_body`` of them with someone
        (those were recorded as they finished; the others count now, since
        looking for nobody took time too)."""
        self.videos += 1
        self.frames += frames
        self.frames_with_body += with_body
        self.record(frames - with_body)

    def done(self) -> str:
        """What was done: "2 photo(s), 1 video(s) (120 frames, 95 with a body)"."""
        parts = []
        if self.photos:
            parts.append(f"{self.photos} photo(s)")
        if self.videos:
            parts.append(f"{self.videos} video(s) ({self.frames} frame(s), "
                         f"{self.frames_with_body} with a body)")
        return ", ".join(parts) or "nothing"

    def summary(self) -> str:
        now = time.perf_counter()
        if self.warm_end is None:
            return "no image processed"
        unit = "/".join(u for u, n in (("photo", self.photos), ("frame", self.videos)) if n) or "image"
        if self.count > self.warm_count:
            per_image = (now - self.warm_end) / (self.count - self.warm_count)
            return (f"{self.done()} in {now - self.start:.1f} s, "
                    f"{1000 * per_image:.0f} ms per {unit} after the first (warm-up) batch")
        per_image = (self.warm_end - self.start) / self.count
        return f"{self.done()}, {1000 * per_image:.0f} ms per {unit} including warm-up"
