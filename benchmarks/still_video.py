"""A still person on video: how much the recovered body jitters, per option.

A photo becomes a short video of a person who does not move: each frame is
the photo shifted by a few pixels (a seeded random walk, at most ``--step``
px a frame in x and y, edges repeated), so BlazePose sees the same person in
slightly different places, as a hand-held camera would show them. The
truth is a body that stands still, so every millimetre the root-relative
joints move from one frame to the next is jitter.

``openhmr demo`` runs on the clip (``openhmr.demo.run_demo``, without
pictures), once per option below; printed for each: the mean distance
(mm) the joints, taken relative to the root (pelvis), move between
consecutive frames, and the time per frame after the first (the command's
wall time, less that of a one-frame run of the same command, over the
frames left).

Baseline, measured in the same run: ``--no-tracking``, every frame a
separate photo (BlazePose's image mode, a whole fit, no smoothing), what a
per-frame method gives; the others' jitter is printed as a ratio of it.
"BlazePose's video mode" is the default's way of detecting before frames
were detected apart (``DemoOptions.video_mode``; no flag).

Usage: python benchmarks/still_video.py [PHOTO] [--frames 12] [--step 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from typing import Any
from pathlib import Path

import cv2
import numpy as np

from openhmr import demo
from openhmr.io.images import read_image

DEFAULT_PHOTO = Path(__file__).resolve().parents[2] / "shared" / "reference" / "images" / "random.jpg"

#: label → the demo's options for a video (``DemoOptions`` fields; the flags in the label).
OPTIONS: dict[str, dict[str, object]] = {
    "tracking, clip smoothing (the default)": {},
    "tracking one frame after another, clip smoothing (--batch-size 1)": {"batch_size": 1},
    "tracking in BlazePose's video mode, clip smoothing": {"video_mode": True},
    "tracking, causal smoothing (--smoothing causal)": {"smoothing": "causal"},
    "tracking, no smoothing (--no-smoothing)": {"smoothing": "none"},
    "each frame alone, clip smoothing (--no-tracking --smoothing clip)": {"track": False, "smoothing": "clip"},
    "each frame alone, no smoothing (--no-tracking; baseline)": {"track": False},
}
BASELINE = "each frame alone, no smoothing (--no-tracking; baseline)"


def still_clip(photo: np.ndarray, frames: int, step: int, seed: int) -> list[np.ndarray]:
    """``frames`` RGB copies of ``photo`` (H, W, 3), each shifted by a random
    walk of at most ``step`` px a frame per axis, edges repeated."""
    rng = np.random.default_rng(seed)
    shifts = np.cumsum(rng.integers(-step, step + 1, size=(frames, 2)), axis=0)
    shifts -= shifts[0]
    pad = int(np.abs(shifts).max())
    padded = np.pad(photo, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    height, width = photo.shape[:2]
    return [padded[pad + dy: pad + dy + height, pad + dx: pad + dx + width] for dx, dy in shifts]


def write_mp4(frames: list[np.ndarray], path: Path, fps: float = 30.0) -> None:
    """Write RGB frames (H, W, 3) uint8 as an mp4 (OpenCV's mp4v codec)."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        sys.exit("error: OpenCV cannot write an mp4 here")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def demo_quietly(options: demo.DemoOptions) -> None:
    """``openhmr.demo.run_demo`` with its progress and summary lines kept
    off the benchmark's output: its warnings are passed on, and everything
    it said if it fails (then the benchmark stops)."""
    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        code = demo.run_demo(options)
    lines = said.getvalue().splitlines()
    if code != 0:
        print("\n".join(lines), file=sys.stderr)
        sys.exit(f"error: the demo failed on {options.inputs} with {options}")
    for line in lines:
        if "warning:" in line:
            print(line, file=sys.stderr)


def run_demo(video: Path, out: Path, options: dict[str, Any]) -> float:
    """Run the demo (``openhmr.demo.run_demo``) on ``video``; its wall time in seconds."""
    start = time.perf_counter()
    demo_quietly(demo.DemoOptions(inputs=[str(video)], out=out, render=False, **options))
    return time.perf_counter() - start


def jitter_mm(npz: Path) -> tuple[float, int]:
    """Mean distance (mm) the joints, relative to the root, move between
    consecutive frames, and the number of frames with a body."""
    with np.load(npz) as arrays:
        joints, frame = arrays["joints_3d"], arrays["frame"]
    if len(frame) < 2 or np.any(np.diff(frame) != 1):
        sys.exit(f"error: a body was not found in every frame ({len(frame)} frames with one)")
    relative = joints - joints[:, :1]
    return float(np.linalg.norm(np.diff(relative, axis=0), axis=-1).mean() * 1000), len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", type=Path, nargs="?", default=DEFAULT_PHOTO)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--step", type=int, default=3, help="largest shift per frame and axis, px")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.photo.is_file():
        sys.exit(f"error: {args.photo} does not exist (pass a photo of one person)")
    if args.frames < 3:
        sys.exit("error: --frames must be at least 3")
    photo = read_image(args.photo)
    print(f"{args.photo.name}: {args.frames} frames of {photo.shape[1]}×{photo.shape[0]}, "
          f"shifted by up to {args.step} px a frame", flush=True)
    figures: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = still_clip(photo, args.frames, args.step, args.seed)
        write_mp4(clip, work / "still.mp4")
        write_mp4(clip[:1], work / "first.mp4")
        run_demo(work / "first.mp4", work / "warm-up", {})  # loads Anny and BlazePose once
        for k, (label, options) in enumerate(OPTIONS.items()):
            start_up = run_demo(work / "first.mp4", work / f"first{k}", options)
            seconds = run_demo(work / "still.mp4", work / f"out{k}", options)
            moved, count = jitter_mm(work / f"out{k}" / "still.npz")
            if count != args.frames:
                sys.exit(f"error: {label}: a body in {count} of {args.frames} frames")
            figures[label] = (moved, (seconds - start_up) / (args.frames - 1))
            print(f"{label}: joints move {moved:.1f} mm per frame, "
                  f"{figures[label][1]:.2f} s per frame after the first", flush=True)
    base = figures[BASELINE][0]
    print("jitter as a ratio of the baseline's: " + ", ".join(
        f"{label.split(' (')[0]} {moved / base:.2f}×" for label, (moved, _) in figures.items()))


if __name__ == "__main__":
    main()
