"""Detecting a video's person: BlazePose's video mode or each frame apart,
under each smoothing, on rendered videos of moving Anny bodies.

The bodies move as in ``fit_video.py`` (random poses every
``--keyframe-every`` frames joined by splines, shapes and turns random; 10
frames is brisk, 20 moderate) and drift sideways by 4 mm a frame. Each video
is rendered with openhmr's renderer (``docs/images/make_example.py``'s sky
and grass, 300×360 px, the person ~280 px tall, 30 fps) and written as an
mp4, and ``openhmr demo`` (the Python API, ``--no-render``) recovers the
bodies from it, BlazePose + Anny fitting as by default, with the person's
detector in one of two ways (``DemoOptions.video_mode``):

* **video mode**: BlazePose's tracker, which finds the person near the
  previous frame's landmarks and filters them over time (causally);
* **frames apart**: each frame detected on its own, around the previous
  frame's person.

and the estimates smoothed over the whole clip or causally; and, for
comparison, ``--no-tracking --smoothing clip``: every frame detected and
fitted from scratch (fitted 8 frames at a time), then smoothed. Tracked
fits run in chains side by side (``openhmr.tracking``: with BlazePose's 3D
landmarks, fitted in one pass, a 40-frame video is two chains of 20); one
row fits one frame after another (``--batch-size 1``). Printed per
row, against the true BODY_25 keypoints: PA-MPJPE (mm, mean over frames),
acceleration error and the mean frame-to-frame change of the root-relative
keypoints (mm; the truth's own beside it), the frames without a body, and
the time per frame. Baseline, in the same run: video mode with clip
smoothing (the demo's default before frames were detected apart); the
others' figures are printed as ratios of it.

BlazePose reads these untextured renders less well than photos (it has no
face or clothes to go by), so the PA-MPJPE here is far above what the fit
reaches from exact keypoints (``fit_video.py``); the comparison is between
ways of detecting, on the same frames.

Usage: python benchmarks/video_detection.py [--videos 4] [--frames 40] [--keyframe-every 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "images"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fit_video  # noqa: E402
import make_example as scene  # noqa: E402

from openhmr.body.anny import Anny  # noqa: E402
from openhmr.demo import DemoOptions  # noqa: E402
from still_video import demo_quietly  # noqa: E402

PLACE = torch.tensor([0.0, 0.05, 4.3])  # the pelvis in the camera frame, metres
DRIFT = 0.004  # metres a frame, sideways
FPS = 30.0

#: label → (video_mode, smoothing, track, batch_size)
CONFIGS = {
    "video mode, clip smoothing (baseline)": (True, "clip", True, 8),
    "frames apart, clip smoothing (the default)": (False, "clip", True, 8),
    "frames apart, clip smoothing, one frame after another (--batch-size 1)": (False, "clip", True, 1),
    "video mode, causal smoothing (--smoothing causal)": (True, "causal", True, 8),
    "frames apart, causal smoothing": (False, "causal", True, 8),
    "no tracking, clip smoothing (--no-tracking --smoothing clip)": (False, "clip", False, 8),
}
BASELINE = "video mode, clip smoothing (baseline)"


def render_videos(body: Anny, truth: dict[str, torch.Tensor], folder: Path) -> list[Path]:
    """One mp4 per video of ``truth`` (fit_video.make_videos' (frames, videos, ...))."""
    frames, videos = truth["pose"].shape[:2]
    paths = []
    for v in range(videos):
        path = folder / f"video{v}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS,
                                 (scene.WIDTH, scene.HEIGHT))
        if not writer.isOpened():
            sys.exit("error: OpenCV cannot write an mp4 here")
        side = 1.0 if v % 2 else -1.0
        for f in range(frames):
            with torch.no_grad():
                vertices = body(truth["pose"][f, v:v + 1], truth["shape"][v:v + 1]).vertices[0]
            place = PLACE + torch.tensor([side * DRIFT * f, 0.0, 0.0])
            image = scene.render_photo([vertices + place], body.faces, scene.WIDTH)
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        writer.release()
        paths.append(path)
    return paths


def recover(paths: list[Path], folder: Path, video_mode: bool, smoothing: str, track: bool,
            batch_size: int, frames: int) -> tuple[np.ndarray, float]:
    """The demo's BODY_25 keypoints (frames, videos, 25, 3), NaN where it
    found nobody, and its seconds per frame."""
    fitted = np.full((frames, len(paths), 25, 3), np.nan)
    start = time.perf_counter()
    for v, path in enumerate(paths):
        demo_quietly(DemoOptions(inputs=[str(path)], out=folder, render=False, smoothing=smoothing,
                                 video_mode=video_mode, track=track, batch_size=batch_size, overwrite=True))
        with np.load(folder / f"{path.stem}.npz") as arrays:
            fitted[arrays["frame"], v] = arrays["keypoints_3d/body25"]
    return fitted, (time.perf_counter() - start) / (frames * len(paths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--keyframe-every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    body = Anny()
    truth = fit_video.make_videos(body, args.videos, args.frames, args.keyframe_every, args.seed)
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = render_videos(body, truth, folder)
        print(f"{args.videos} rendered videos × {args.frames} frames, a pose every "
              f"{args.keyframe_every} frames", flush=True)
        for label, (video_mode, smoothing, track, batch_size) in CONFIGS.items():
            fitted, seconds = recover(paths, folder / "out", video_mode, smoothing, track, batch_size,
                                      args.frames)
            found = ~np.isnan(fitted).any(axis=(2, 3))
            whole = found.all(axis=0)  # videos with a body in every frame
            if not whole.any():
                sys.exit(f"error: {label}: no video has a body in every frame")
            row = fit_video.metrics(torch.from_numpy(fitted[:, whole]), truth["kp3"][:, whole])
            row |= {"missing": float((~found).sum()), "seconds": seconds, "videos": float(whole.sum())}
            rows[label] = row
            print(f"{label}: PA-MPJPE {row['pa']:.1f} mm, acceleration error {row['accel']:.1f} "
                  f"mm/frame², change {row['change']:.1f} mm/frame (truth {row['true_change']:.1f}), "
                  f"{int(row['missing'])} frames without a body (scored on {int(row['videos'])} "
                  f"whole videos), {seconds:.2f} s per frame", flush=True)
    base = rows[BASELINE]
    for label, row in rows.items():
        print(f"{label}: PA-MPJPE {row['pa'] / base['pa']:.2f}×, acceleration error "
              f"{row['accel'] / base['accel']:.2f}×, time {row['seconds'] / base['seconds']:.2f}× the baseline's")


if __name__ == "__main__":
    main()
