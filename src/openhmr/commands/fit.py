"""``openhmr fit``: a body model fitted to keypoint files, without the images."""

from __future__ import annotations

import argparse

from openhmr.commands import (add_jumps_option, input_argument, path_argument, add_noise_option, add_output_options,
                              add_upright_option, fit_config, frame_rate, image_size, positive_int)

DESCRIPTION = """\
Fit a body model (the open Anny, or SMPL with --smpl) to the 2D keypoints of
OpenPose JSON files (pose_keypoints or pose_keypoints_2d, BODY_25 or COCO-18;
the most confident person of each file), without the images: the fit of
'openhmr demo --method fit --openpose', in the same crop and camera. Per file,
into --out: <name>.json (schema openhmr.prediction/1, no pictures), <name>.npz
and <name>.obj|ply|glb, where <name> is the file's stem without '_keypoints'.

--image-size is the size of the images the keypoints were found in (OpenPose
does not record it): keypoints outside it are refused, and it places the
principal point of the camera shared by a file's people or a video's frames
(scene_camera) at the image centre; each person's own camera is their crop's.

--sequence: the files are a video's frames, as OpenPose's --write_json names
them (<video>_<frame, 12 digits>_keypoints.json). Each video's frames are
fitted in order, each fit continuing the previous frame's, smoothed over time
(--smoothing), and written as one <video>.npz (arrays stacked over the frames
with a body, 'frame' their indices) — as 'openhmr demo VIDEO --openpose
FOLDER --no-render' writes it. --fps, the video's frame rate, is required.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fit", help="fit a body model to OpenPose keypoint files (no images needed)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", type=input_argument, metavar="KEYPOINTS",
                   help="OpenPose JSON files, or folders searched recursively for *.json")
    p.add_argument("--image-size", dest="image_size", type=image_size, required=True, metavar="WIDTHxHEIGHT",
                   help="size of the images the keypoints come from, pixels, e.g. 1920x1080")
    p.add_argument("--smpl", type=path_argument, metavar="MODEL",
                   help="fit this SMPL model file (.pkl or .npz from 'openhmr convert-smpl') "
                        "instead of Anny")
    p.add_argument("--sequence", action="store_true",
                   help="the files are video frames (<video>_<frame, 12 digits>_keypoints.json): "
                        "fit each video's frames in order and smooth them, one <video>.npz each")
    p.add_argument("--fps", type=frame_rate, metavar="HZ", help="--sequence: the video's frame rate")
    p.add_argument("--smoothing", choices=("clip", "causal", "none"),
                   help="--sequence: clip (default: the whole video at once, no lag), causal "
                        "(One-Euro filter, each frame from the frames before it) or none")
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, default=8, metavar="N",
                   help="files fitted together (default: 8; about 3× faster than one at a time on "
                        "a CPU; 1 fits each alone, so that its result does not depend on the others); "
                        "--sequence: a video's chains of frames fitted side by side, in two passes "
                        "(1: one frame after another)")
    p.add_argument("--max-people", dest="max_people", type=positive_int, default=1, metavar="N",
                   help="fit up to N people of each file, the most confident first (default 1); "
                        "each is written as <name>_person<k>.* (with --sequence each person is "
                        "followed through the frames: <video>_person<k>.npz)")
    add_noise_option(p)
    add_upright_option(p)
    add_jumps_option(p)
    add_output_options(p, "files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from openhmr.errors import InputError
    from openhmr.fit_files import FitFilesOptions, run_fit_files

    if not args.sequence and (args.fps is not None or args.smoothing is not None):
        raise InputError("--fps and --smoothing apply to --sequence (a video's frame files) only")
    if args.sequence and args.mesh_format is not None:
        raise InputError("--sequence writes one .npz per video and no mesh: --mesh-format does not apply")

    options = FitFilesOptions(
        inputs=list(args.inputs), image_size=args.image_size, out=args.out,
        smpl=args.smpl, mesh_format=args.mesh_format or "obj", overwrite=args.overwrite,
        skip_existing=args.skip_existing, device=args.device,
        sequence=args.sequence, fps=args.fps, smoothing=args.smoothing or "clip",
        batch_size=args.batch_size, max_people=args.max_people, noise_px=args.noise_px,
        fit_config=fit_config(args.upright, args.jumps, args.noise_px),
    )
    return run_fit_files(options)
