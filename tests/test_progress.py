"""Progress reports: plain lines where stderr is not a terminal (a log file),
at most every OPENHMR_PROGRESS_SECONDS, a closing line only for work that
completed, and a one-line error for a bad interval."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest

from openhmr.cli import main as cli_main
from openhmr.errors import InputError
from openhmr.progress import LineProgress, duration, line_interval, progress_bar, speed, track


class Clock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_at_most_once_an_interval_and_say_how_far():
    clock, out = Clock(), io.StringIO()
    with LineProgress(20, "convert x", "img", interval=10, stream=out, clock=clock) as bar:
        for _ in range(5):
            clock.now += 1  # one image a second
            bar.update(1)
        assert out.getvalue() == ""  # 5 s in: no line yet
        for _ in range(5):
            clock.now += 1
            bar.update(1)
        # 10 s in, 10 of 20 done at 1 img/s: 10 s left.
        assert out.getvalue() == "convert x: 10/20 img (50 %), 1.0 img/s, ~10 s left\n"
        for _ in range(10):
            clock.now += 2
            bar.update(1)
            bar.set_postfix_str("loss=0.5", refresh=False)
    lines = out.getvalue().splitlines()
    # Lines at 10, 20 and 30 s (every 10 s), then the closing line.
    assert len(lines) == 4 and "\r" not in out.getvalue()
    # 15 in 20 s, slower than one a second: seconds per image.
    assert lines[1] == "convert x: 15/20 img (75 %), 1.3 s/img, ~6.7 s left, loss=0.5"
    assert lines[-1] == "convert x: 20/20 img in 30 s (1.5 s/img), loss=0.5"


def test_many_short_reports_that_share_a_clock_still_write_a_line_an_interval():
    """Thirty videos of 4 s each, a report each (left uncleared: the demo's):
    timed alone, none lived the 10 s interval and nothing was written in 2
    minutes; sharing when the last line was written, one comes every ~10 s."""
    from openhmr.progress import LineClock

    clock, out, lines = Clock(), io.StringIO(), LineClock()
    for k in range(30):
        with LineProgress(4, f"video{k}", "frame", interval=10, stream=out, clock=clock, leave=False,
                          lines=lines) as bar:
            for _ in range(4):
                clock.now += 1
                bar.update(1)
    written = out.getvalue().splitlines()
    assert len(written) == 12 and written[0] == "video2: 2/4 frame (50 %), 1.0 frame/s, ~2.0 s left"
    alone = io.StringIO()
    for k in range(30):
        with LineProgress(4, f"video{k}", "frame", interval=10, stream=alone, clock=clock, leave=False) as bar:
            for _ in range(4):
                clock.now += 1
                bar.update(1)
    assert alone.getvalue() == ""
    # A report just begun, its line due from the last one, waits a second: its
    # speed over microseconds said 100000 frame/s, ~0.0 s left.
    clock.now += 20
    fresh = io.StringIO()
    with LineProgress(300, "video", "frame", interval=10, stream=fresh, clock=clock, leave=False,
                      lines=lines) as bar:
        clock.now += 1e-5
        bar.update(1)
        assert fresh.getvalue() == ""
        clock.now += 1.0
        bar.update(1)
        assert fresh.getvalue() == "video: 2/300 frame (0 %), 2.0 frame/s, ~2 min 29 s left\n"


def test_no_closing_line_after_an_error_or_when_not_left():
    clock, out = Clock(), io.StringIO()
    with pytest.raises(RuntimeError):
        with LineProgress(3, "w", "img", interval=10, stream=out, clock=clock) as bar:
            bar.update(1)
            raise RuntimeError("failed")
    assert out.getvalue() == ""
    with LineProgress(3, "w", "img", interval=10, stream=out, clock=clock, leave=False) as bar:
        bar.update(3)
    assert out.getvalue() == ""


def test_unknown_total_slow_work_and_resumed_counts():
    clock, out = Clock(), io.StringIO()
    bar = LineProgress(None, "frames", "frame", interval=0, stream=out, clock=clock)
    clock.now += 8
    bar.update(2)
    assert out.getvalue() == "frames: 2 frame, 4.0 s/frame\n"
    # A resumed run counts its speed and time left from its own steps only.
    resumed = LineProgress(100, "train", "step", initial=90, interval=0, stream=out, clock=clock)
    clock.now += 5
    resumed.update(5)
    assert out.getvalue().splitlines()[-1] == "train: 95/100 step (95 %), 1.0 step/s, ~5.0 s left"
    # A postfix set with refresh writes a line when one is due (a long step's own progress).
    resumed.set_postfix_str("fitting 40 %")
    assert out.getvalue().splitlines()[-1].endswith(", fitting 40 %")


def test_work_past_its_announced_total_reads_as_of_unknown_total():
    """A video container that under-counts its frames (an OpenCV-written .mpg
    announced 1 of its 5): the lines said "12/3 frame (400 %)"."""
    clock, out = Clock(), io.StringIO()
    with LineProgress(3, "clip.mpg", "frame", interval=0, stream=out, clock=clock) as bar:
        clock.now += 3
        bar.update(3)
        clock.now += 9
        bar.update(9)
    assert out.getvalue().splitlines() == ["clip.mpg: 3/3 frame (100 %), 1.0 frame/s",
                                           "clip.mpg: 12 frame, 1.0 frame/s", "clip.mpg: 12 frame in 12 s (1.0 frame/s)"]


def test_duration_and_speed_read_as_people_write_them():
    assert duration(4.25) == "4.2 s"
    assert duration(42.4) == "42 s"
    assert duration(185) == "3 min 05 s"
    assert duration(7620) == "2 h 07 min"
    assert speed(10, 4, "img") == "2.5 img/s"
    assert speed(1, 4, "img") == "4.0 s/img"
    assert speed(0, 4, "img") == ""


def test_track_counts_each_item_and_is_silent_when_left_early(monkeypatch, capsys):
    monkeypatch.setenv("OPENHMR_PROGRESS_SECONDS", "0")
    assert list(track(range(3), "items", "it")) == [0, 1, 2]
    lines = capsys.readouterr().err.splitlines()  # capsys's stderr is no terminal
    assert [line.split(",")[0] for line in lines[:3]] == ["items: 1/3 it (33 %)", "items: 2/3 it (66 %)",
                                                          "items: 3/3 it (100 %)"]
    assert lines[-1].startswith("items: 3/3 it in ") and len(lines) == 4
    for i in track(range(5), "early", "it"):
        if i == 1:
            break
    assert "early: 5/5" not in capsys.readouterr().err
    assert list(track([1, 2], "off", "it", enabled=False)) == [1, 2]
    with progress_bar(2, "off", "it", enabled=False) as bar:
        bar.update(2)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("value", ["x", "-1", "nan", "inf"])
def test_a_bad_interval_is_one_line_before_any_work(monkeypatch, capsys, value):
    monkeypatch.setenv("OPENHMR_PROGRESS_SECONDS", value)
    with pytest.raises(InputError, match="OPENHMR_PROGRESS_SECONDS"):
        line_interval()
    assert cli_main(["data", "info", "/nonexistent"]) == 1
    err = capsys.readouterr().err
    assert err == f"openhmr data: error: OPENHMR_PROGRESS_SECONDS={value!r} must be a number of seconds ≥ 0\n"


def test_a_logged_command_writes_lines_not_carriage_returns(tmp_path):
    """A conversion whose stderr is a log file: a line per sequence (interval
    0) and a closing line, no carriage return a log would run together."""
    rng = np.random.default_rng(0)
    for i in range(3):
        path = tmp_path / "amass" / "CMU" / f"0{i}_poses.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, poses=rng.normal(size=(4, 156)), betas=rng.normal(size=16), trans=np.zeros((4, 3)),
                 gender="female", mocap_framerate=120.0)
    log = tmp_path / "log.txt"
    with log.open("w") as stderr:
        done = subprocess.run([sys.executable, "-m", "openhmr", "data", "convert-mocap", "amass",
                               str(tmp_path / "amass"), str(tmp_path / "mocap.npz")],
                              stderr=stderr, stdout=subprocess.PIPE, timeout=300,
                              env={**os.environ, "OPENHMR_PROGRESS_SECONDS": "0"})
    text = log.read_text()
    assert done.returncode == 0, text
    assert "\r" not in text
    lines = text.splitlines()
    assert [line.split(",")[0] for line in lines[:3]] == [
        "convert amass: 1/3 file (33 %)", "convert amass: 2/3 file (66 %)", "convert amass: 3/3 file (100 %)"]
    assert lines[3].startswith("convert amass: 3/3 file in ")


def test_durations_at_the_unit_boundaries_and_no_time_left_when_done():
    """Rounding up to the next unit moves to it ('2 min 00 s', not '1 min 00 s'
    for 119.6 s; '1 h 00 min', not '60 min 00 s'; '1 min 00 s', not '60 s' for
    59.7 s; '10 s', not '10.0 s'), and a line
    written once every step is done shows no '~0 s left'."""
    assert duration(60) == "1 min 00 s"
    assert duration(59.7) == "1 min 00 s"
    assert duration(59.4) == "59 s"
    assert duration(9.97) == "10 s"
    assert duration(9.94) == "9.9 s"
    assert duration(119.6) == "2 min 00 s"
    assert duration(3600) == "1 h 00 min"
    assert duration(3599.6) == "1 h 00 min"
    clock, out = Clock(), io.StringIO()
    bar = LineProgress(4, "w", "img", interval=0, stream=out, clock=clock)
    clock.now += 2
    bar.update(4)
    assert out.getvalue() == "w: 4/4 img (100 %), 2.0 img/s\n"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_message_during_a_bar_on_a_terminal_stands_on_its_own_line(monkeypatch):
    """On a terminal a tqdm bar leaves the cursor at its end: a warning or an
    error said while it runs is written above it (the bar cleared, then drawn
    again), not glued onto the bar's line."""
    from tqdm import tqdm

    from openhmr.progress import message

    screen = _Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    with tqdm(total=3, desc="images", file=screen, leave=False) as bar:
        bar.update(1)
        message("openhmr demo: error: a.png: no person was found")
        bar.update(1)
    lines = [part.split("\r")[-1].strip() for part in screen.getvalue().split("\n")]
    assert "openhmr demo: error: a.png: no person was found" in lines


def test_a_failed_conversion_closes_its_samples_before_the_error_is_said(tmp_path):
    """A converter's sample generator holds its progress bar; a write that
    fails closes it at once, so the bar ends before the command prints the
    error (on a terminal it was drawn again after the error)."""
    from openhmr.data.datasets._common import write_samples
    from openhmr.data.shards import Sample

    closed = []

    def samples():
        try:
            yield Sample("a", np.zeros((8, 8, 3), np.uint8), np.zeros((19, 3)), np.zeros(2), "x")
            yield Sample("a", np.zeros((8, 8, 3), np.uint8), np.zeros((19, 3)), np.zeros(2), "x")  # refused
            yield Sample("c", np.zeros((8, 8, 3), np.uint8), np.zeros((19, 3)), np.zeros(2), "x")
        finally:
            closed.append(True)

    try:
        write_samples(samples(), tmp_path / "out", "x", {}, overwrite=False)
    except ValueError as error:  # while the error is held, as the command line holds it to print it
        assert "duplicate sample key" in str(error)
        assert closed == [True]
    else:
        pytest.fail("the duplicate key was not refused")
