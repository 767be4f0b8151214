"""Sub-commands of the ``openhmr`` command line, one module each.

Each module defines ``register(subparsers)``, which adds its parser and sets
``func`` (``args -> int exit code``) as the parser default. Heavy imports
happen inside ``func`` so that ``openhmr --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path


def add_output_options(p: argparse.ArgumentParser, inputs: str) -> None:
    """--out, --device, --mesh-format, --overwrite and --skip-existing, as
    ``demo`` and ``fit`` share them; ``inputs`` names what is processed
    ("inputs", "files")."""
    p.add_argument("--out", type=path_argument, default=Path("openhmr_out"), metavar="DIR",
                   help=f"output folder (default: ./openhmr_out); {inputs} found in a folder keep "
                        "their relative path")
    p.add_argument("--device", type=device_name, default="cpu", metavar="cpu|cuda",
                   help="torch device to run on (default: cpu)")
    p.add_argument("--mesh-format", dest="mesh_format", choices=("obj", "ply", "glb"),
                   default=None, help="mesh file format (default: obj)")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true",
                          help=f"replace existing output files (otherwise one of the {inputs} whose "
                               "outputs exist is reported as an error and skipped), and remove what an "
                               "earlier run wrote for the same input that this run does not replace (more "
                               "people than are found now, or the files of the other --max-people "
                               "mode)")
    existing.add_argument("--skip-existing", dest="skip_existing", action="store_true",
                          help=f"pass by the {inputs} whose outputs an earlier run finished (to go on "
                               "with a run that was stopped), counted apart and not as errors; the "
                               "outputs of one it left unfinished are still reported as existing")


def add_noise_option(p: argparse.ArgumentParser, applies_to: str = "") -> None:
    """--noise-px, as ``demo`` and ``fit`` share it; ``applies_to`` opens its help."""
    p.add_argument("--noise-px", dest="noise_px", type=positive_pixels, metavar="PX",
                   help=f"{applies_to}σ of the keypoints' noise in image pixels, when it is known and "
                        "does not grow with the person (e.g. hand annotations, or a detector's error "
                        "measured on large images): the fit ends with a step that trusts them that much "
                        "(default: noise in proportion to the person, as a detector's)")


def add_upright_option(p: argparse.ArgumentParser, applies_to: str = "") -> None:
    """--upright, as ``demo`` and ``fit`` share it; ``applies_to`` opens its help."""
    p.add_argument("--upright", action="store_true",
                   help=f"{applies_to}the people stand or walk upright before a level camera: "
                        "the fit prefers bodies within ~11° of the image's vertical, which tells a "
                        "body leaning towards the camera from one leaning away (default: the "
                        "orientation is free; leave it so for people lying, bending or upside down)")


def add_jumps_option(p: argparse.ArgumentParser, applies_to: str = "with --noise-px: ") -> None:
    """--jumps / --no-jumps, for fits from 2D keypoints told their noise;
    ``applies_to`` opens the help. Neither given: None (the fit's default, on)."""
    p.add_argument("--jumps", action=argparse.BooleanOptionalAction, default=None,
                   help=f"{applies_to}after the fit, turn each thigh, shin, upper arm and "
                        "forearm in turn to the other depth that projects alike, refit, and keep "
                        "the lowest energy (kinematic jumps; default: on; --no-jumps takes ~2/3 of "
                        "the time, and on synthetic photos its median is ~0.6 mm higher and more of "
                        "the worst fits stay)")


def fit_config(upright: bool, jumps: bool | None = None, noise_px: float | None = None) -> object | None:
    """``openhmr.fit.FitConfig`` for --upright and --jumps / --no-jumps (``jumps``
    True / False; None: neither given), or None (the defaults).

    Raises:
        InputError: --jumps or --no-jumps without --noise-px (the jumps compare
            energies of the told noise's fit; without it there is nothing they apply to).
    """
    if jumps is not None and noise_px is None:
        from openhmr.errors import InputError

        flag = "--jumps" if jumps else "--no-jumps"
        raise InputError(f"{flag} needs --noise-px (the jumps refit with the told noise's weights)")
    if not upright and jumps is not False:
        return None
    from openhmr.fit import UPRIGHT_SIGMA, FitConfig

    config = FitConfig(upright_sigma=UPRIGHT_SIGMA if upright else None)
    return config if jumps is not False else replace(config, jump_iters=0)


def device_name(text: str) -> str:
    """argparse type: a device torch knows (cpu, cuda, cuda:1, mps, ...), else
    argparse's one-line usage error; whether it is present is checked later."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch's own lines for a retired name (mkldnn): ours is one
            warnings.simplefilter("ignore")
            torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (e.g. cpu, cuda, cuda:1)") from None
    return text


def backend_name(text: str) -> str:
    """argparse type: a backend openhmr has (--backend), else argparse's
    one-line usage error."""
    from openhmr.inference.backends import BACKENDS

    if text not in BACKENDS:
        raise argparse.ArgumentTypeError(f"unknown backend {text!r}; choose from {', '.join(BACKENDS)}")
    return text


def timed_backend_name(text: str) -> str:
    """argparse type: a backend ``bench`` can time (not ``auto``, which picks one)."""
    from openhmr.inference.backends import BACKENDS

    if text not in BACKENDS or text == "auto":
        raise argparse.ArgumentTypeError(f"unknown backend {text!r}; choose from "
                                         f"{', '.join(n for n in BACKENDS if n != 'auto')}")
    return text


def frame_rate(text: str) -> float:
    """argparse type: frames per second in (0, 10000] (else argparse's one-line usage error)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 10_000):
        raise argparse.ArgumentTypeError(f"must be the video's frame rate, in (0, 10000] frames per second, "
                                         f"got {text!r}")
    return value


def positive_pixels(text: str) -> float:
    """argparse type: a finite number > 0 (--noise-px, pixels)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    # bounded so that float32 keeps it finite and non-zero: no keypoint's noise lies outside
    if not (math.isfinite(value) and 1e-6 <= value <= 1e6):
        raise argparse.ArgumentTypeError(f"must be a positive number of pixels, from 1e-6 to 1e6, got {text!r}")
    return value


def image_size(text: str) -> tuple[int, int]:
    """argparse type: WIDTHxHEIGHT (or WIDTH,HEIGHT) in pixels, both in [1, ``MAX_IMAGE_SIDE``]."""
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        width = height = 0
    if not (1 <= width <= MAX_IMAGE_SIDE and 1 <= height <= MAX_IMAGE_SIDE):
        raise argparse.ArgumentTypeError(f"must be WIDTHxHEIGHT in positive pixels up to {MAX_IMAGE_SIDE}, "
                                         f"e.g. 1920x1080, got {text!r}")
    return width, height


#: The longest image side --image-size takes (a 31-bit pixel index; no camera comes near).
MAX_IMAGE_SIDE = 2**31 - 1


def seed(text: str) -> int:
    """argparse type: a random seed, an integer in [0, 2⁶³) (torch's generators take no more)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2 ** 63:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2^63), got {text!r}")
    return value


def path_argument(text: str) -> Path:
    """argparse type: a path, not empty (else argparse's one-line usage
    error): ``Path("")`` is the current folder, which an unset shell
    variable would otherwise silently make an input or an output."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path (an unset variable?)")
    return Path(text)


def input_argument(text: str) -> str:
    """argparse type: an input file or folder as given, not empty (see
    :func:`path_argument`)."""
    path_argument(text)
    return text


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (else argparse's one-line usage error)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value
