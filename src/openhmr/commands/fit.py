"""``openhmr fit``: a body model fitted to keypoint files, without the images."""

from __future__ import annotations

import argparse
from pathlib import Path

from openhmr.commands import add_output_options

DESCRIPTION = """\
Fit a body model (the open Anny, or SMPL with --smpl) to the 2D keypoints of
OpenPose JSON files (pose_keypoints or pose_keypoints_2d, BODY_25 or COCO-18;
the most confident person of each file), without the images: the fit of
'openhmr demo --method fit --openpose', in the same crop and camera. Per file,
into --out: <name>.json (schema openhmr.prediction/1, no pictures), <name>.npz
and <name>.obj|ply|glb, where <name> is the file's stem without '_keypoints'.

--image-size is the size of the images the keypoints were found in (OpenPose
does not record it); it places the pinhole camera's principal point.
For a video's per-frame files, 'openhmr demo VIDEO --openpose FOLDER' tracks
the person from frame to frame and smooths the result over time.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fit", help="fit a body model to OpenPose keypoint files (no images needed)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="KEYPOINTS",
                   help="OpenPose JSON files, or folders searched recursively for *.json")
    p.add_argument("--image-size", dest="image_size", required=True, metavar="WIDTHxHEIGHT",
                   help="size of the images the keypoints come from, pixels, e.g. 1920x1080")
    p.add_argument("--smpl", type=Path, metavar="MODEL",
                   help="fit this SMPL model file (.pkl or .npz from 'openhmr convert-smpl') "
                        "instead of Anny")
    add_output_options(p, "files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from openhmr.fit_files import FitFilesOptions, parse_image_size, run_fit_files

    options = FitFilesOptions(
        inputs=list(args.inputs), image_size=parse_image_size(args.image_size), out=args.out,
        smpl=args.smpl, mesh_format=args.mesh_format, overwrite=args.overwrite, device=args.device,
    )
    return run_fit_files(options)
