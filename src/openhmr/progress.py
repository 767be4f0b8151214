"""Progress of long work, on stderr.

On a terminal a tqdm bar redraws itself in place. Anywhere else (a log file,
a batch job's output, a pipe) a bar's carriage returns pile up into one
unreadable line, so there a plain line is written instead, at most every
``OPENHMR_PROGRESS_SECONDS`` seconds (30 by default; 0 writes one per step):

    convert coco: 4200/40137 img (10 %), 51.3 img/s, ~12 min left

and, when the work completes, one closing line with its total time. Work that
stops on an error or an interrupt writes no closing line: the error says why.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TextIO, TypeVar

from openhmr.errors import InputError

T = TypeVar("T")

INTERVAL_VARIABLE = "OPENHMR_PROGRESS_SECONDS"
DEFAULT_INTERVAL_S = 30.0


class Progress(Protocol):
    """What the work sees of a bar: tqdm's own names, so that a tqdm bar is one."""

    def update(self, n: int = 1) -> Any: ...

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, exc_type: type[BaseException] | None, /, *rest: object) -> Any: ...


def line_interval() -> float:
    """Seconds between two progress lines when stderr is not a terminal, from
    ``OPENHMR_PROGRESS_SECONDS``.

    Raises:
        InputError: the variable is set to something other than a number ≥ 0.
    """
    text = os.environ.get(INTERVAL_VARIABLE, "").strip()
    if not text:
        return DEFAULT_INTERVAL_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise InputError(f"{INTERVAL_VARIABLE}={text!r} must be a number of seconds ≥ 0")
    return seconds


def duration(seconds: float) -> str:
    """A short human duration: '42 s', '3 min 05 s', '2 h 07 min'."""
    seconds = max(0.0, seconds)
    # Each unit up to where its rounding would reach the next: 9.96 s reads
    # "10 s", 59.7 s "1 min 00 s".
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def speed(count: float, seconds: float, unit: str) -> str:
    """'51.3 img/s', or '4.2 s/img' for work slower than one a second."""
    if count <= 0 or seconds <= 0:
        return ""
    rate = count / seconds
    return f"{rate:.1f} {unit}/s" if rate >= 1 else f"{1 / rate:.1f} s/{unit}"


def message(line: str) -> None:
    """One line on stderr, a warning or an error said while work goes on. On
    a terminal a live tqdm bar holds the cursor at its end: the line is
    written above the bars, which are drawn again below it, instead of being
    glued to one and leaving it on the screen."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is not None and sys.stderr.isatty():
        tqdm_module.tqdm.write(line, file=sys.stderr)
        sys.stderr.flush()
        return
    print(line, file=sys.stderr, flush=True)


class LineClock:
    """When the last progress line was written (``last``, monotonic seconds;
    None before any report began). The reports of one process share one
    (:data:`PROCESS_LINES`), so that a run of many short tasks, each with a
    report of its own (a folder of short videos), still writes a line every
    interval: each report timing itself, none lived long enough to write one."""

    def __init__(self) -> None:
        self.last: float | None = None


#: The line clock of :func:`progress_bar`'s reports.
PROCESS_LINES = LineClock()

#: Seconds a report runs before its first line (at most the interval).
MIN_AGE_S = 1.0


class LineProgress:
    """A progress report of plain lines, for a stream that is not a terminal.

    Args:
        total: the number of steps, or None where it is not known.
        desc: what the work is ("convert coco").
        unit: the name of one step ("img").
        initial: steps already done (a resumed run); the speed counts only new ones.
        leave: write the closing line when the work completes.
        interval: seconds between two lines (default: :func:`line_interval`).
        stream: where the lines go (default: stderr).
        clock: seconds, monotonic (a test's own clock).
        lines: when the last line of the reports it shares with was written
            (default: its own).
    """

    def __init__(self, total: int | None, desc: str, unit: str, *, initial: int = 0, leave: bool = True,
                 interval: float | None = None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, lines: LineClock | None = None) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.first = initial
        self.leave = leave
        self.interval = line_interval() if interval is None else interval
        self.stream = stream
        self.clock = clock
        self.start = clock()
        self.lines = LineClock() if lines is None else lines
        if self.lines.last is None:
            self.lines.last = self.start
        self.postfix = ""
        self.closed = False

    def update(self, n: int = 1) -> None:
        """``n`` more steps done; a line if the last one is ``interval`` seconds old."""
        self.n += n
        self._tick()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        """Text shown after the counts (figures of the work, or how far a long
        step has got); with ``refresh``, a line now if one is due."""
        self.postfix = s
        if refresh:
            self._tick()

    def _tick(self) -> None:
        now = self.clock()
        # A report only just begun (the line being due from the process's last)
        # waits a moment, so that its speed and time left mean something.
        if now - (self.lines.last or 0.0) >= self.interval and now - self.start >= min(self.interval, MIN_AGE_S):
            self.lines.last = now
            self._write(self.status(now))

    def _known_total(self) -> int | None:
        """The total, unless the work has gone past it: a video container that
        under-counts its frames (an OpenCV-written .mpg announced 1 of 5)
        would read "12/3 (400 %)"."""
        return self.total if self.total and self.n <= self.total else None

    def status(self, now: float) -> str:
        """The line for the work so far: counts, share, speed, time left."""
        elapsed, done = now - self.start, self.n - self.first
        total = self._known_total()
        parts = [f"{self.n}/{total} {self.unit}" if total else f"{self.n} {self.unit}"]
        if total:
            parts[0] += f" ({100 * self.n // total} %)"
        rate = speed(done, elapsed, self.unit)
        if rate:
            parts.append(rate)
            if total and self.n < total:
                parts.append(f"~{duration((total - self.n) * elapsed / done)} left")
        if self.postfix:
            parts.append(self.postfix)
        return f"{self.desc}: " + ", ".join(parts)

    def close(self, completed: bool = True) -> None:
        """End the report; the closing line only if ``completed`` and ``leave``."""
        if self.closed:
            return
        self.closed = True
        if not (completed and self.leave):
            return
        now = self.clock()
        self.lines.last = now
        elapsed, done = now - self.start, self.n - self.first
        total = self._known_total()
        counts = f"{self.n}/{total}" if total else f"{self.n}"
        line = f"{self.desc}: {counts} {self.unit} in {duration(elapsed)}"
        rate = speed(done, elapsed, self.unit)
        if rate:
            line += f" ({rate})"
        if self.postfix:
            line += f", {self.postfix}"
        self._write(line)

    def _write(self, line: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        print(line, file=stream, flush=True)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.close(completed=exc_type is None)


class _Silent:
    """The bar of work asked to show no progress."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_bar(total: int | None, desc: str, unit: str, *, initial: int = 0, leave: bool = True,
                 enabled: bool = True) -> Progress:
    """A progress report advanced by hand with ``update(n)``; a ``with`` block
    closes it. A tqdm bar where stderr is a terminal, :class:`LineProgress`
    elsewhere, nothing if not ``enabled``. ``leave=False`` clears a finished
    bar and writes no closing line (for work whose caller reports the end)."""
    if not enabled:
        return _Silent()
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr,
                    dynamic_ncols=True, leave=leave)
    return LineProgress(total, desc, unit, initial=initial, leave=leave, lines=PROCESS_LINES)


def track(iterable: Iterable[T], desc: str, unit: str, *, total: int | None = None, leave: bool = True,
          enabled: bool = True) -> Iterator[T]:
    """``iterable``'s items, each counted as a step of a :func:`progress_bar`
    once the loop asks for the next; ``total`` defaults to ``len(iterable)``
    where it has one. A loop left early (``break``, an error) writes no
    closing line."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with progress_bar(total, desc, unit, leave=leave, enabled=enabled) as bar:
        for item in iterable:
            yield item
            bar.update(1)
