"""What ``openhmr demo`` can be asked to do: its options and their choices."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

MESH_FORMATS = ("obj", "ply", "glb")
METHODS = ("hmr", "fit", "hmr+fit")
# Videos followed with tracking: smoothed over the whole clip, frame by frame, or not.
SMOOTHING = ("clip", "causal", "none")


@dataclass
class DemoOptions:
    """What ``openhmr demo`` was asked to do (one field per flag)."""

    inputs: list[str]
    out: Path = Path("openhmr_out")
    method: str | None = None
    weights: Path | None = None
    smpl: Path | None = None
    bbox: str | None = None
    openpose: Path | None = None
    detect: bool = False
    device: str = "cpu"
    mesh_format: str = "obj"
    mesh_format_given: bool = False  # --mesh-format was given: said unused where all inputs are videos
    overwrite: bool = False
    skip_existing: bool = False  # pass by the inputs an earlier run finished (finished_earlier)
    backend: str = "torch"
    batch_size: int = 8
    render: bool = True
    fit_config: Any = None  # openhmr.fit.FitConfig for --method fit / hmr+fit
    # the command line's --jumps (True) or --no-jumps (False), None for neither: only to
    # warn where they do not apply (fit_config carries what the fit does)
    jumps: bool | None = None
    track: bool = True  # videos: follow the person from frame to frame (detector and fit)
    # videos: "clip" (whole video, no lag), "causal" (One-Euro) or "none"; None: "clip"
    # with track, "none" without (every frame a separate photo)
    smoothing: str | None = None
    # videos, with the detector and track: BlazePose's video mode (its tracker and landmark
    # filter) or each frame detected apart; None: video mode unless smoothed over the clip
    video_mode: bool | None = None
    max_people: int = 1  # photos: up to this many people each (--openpose or the detector)
    # --method fit|hmr+fit with the detector: fit its 3D world landmarks too, or its 2D ones alone
    world_landmarks: bool = True
    # --method fit|hmr+fit: σ of the keypoints' noise in image pixels, where known and not
    # growing with the person (openhmr.fit.FitConfig.noise_px); None: in proportion, a detector's
    noise_px: float | None = None
    # videos with the detector: frames between searches of the whole frame (for newcomers,
    # or while nobody is followed); None: 10
    search_every: int | None = None


def video_smoothing(options: DemoOptions) -> str:
    """How a video's estimates are smoothed: ``options.smoothing``, or when
    unset, over the whole clip with tracking and not at all without."""
    return options.smoothing or ("clip" if options.track else "none")
