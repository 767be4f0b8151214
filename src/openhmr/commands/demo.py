"""``openhmr demo``: recover body meshes from photos, folders and videos."""

from __future__ import annotations

import argparse

from openhmr.commands import (add_jumps_option, input_argument, path_argument, add_noise_option, add_output_options, add_upright_option,
                              backend_name, fit_config, positive_int)

DESCRIPTION = """\
Recover a 3D body mesh from each input image (or video frame) and write, per
input, into --out: <name>.json (parameters, 2D keypoints in image pixels, 3D
joints, crop and camera; schema openhmr.prediction/1), <name>.npz (the same
arrays plus the mesh), <name>.obj|ply|glb (the mesh), <name>_overlay.png (the
mesh over the photo) and <name>_views.png (input, keypoints, overlay, mesh and
two side views). A video gives <name>.npz with every frame and
<name>_overlay.mp4.

Without --weights and --smpl the open default runs: the BlazePose detector
finds the person and the Anny body model is fitted to its keypoints
(--method fit). With HMR weights and an SMPL file, HMR's network predicts the
body (--method hmr), optionally refined by a fit (--method hmr+fit).

The person is located by one of --bbox, --openpose, --detect (two at once
are refused), or else the whole image is taken as a tight crop of one person
(as the original HMR demo does; a warning says so).

With --max-people N (N > 1, --openpose or the detector) up to N people of each
photo are recovered: <name>_person1.json, .npz, mesh and _views.png,
<name>_person2.*, …, one <name>_overlay.png with everyone and one
<name>_scene.obj|ply|glb with everyone's meshes in one camera. In a video each
person is followed from frame to frame: <name>_person<k>.npz per person and
one <name>_overlay.mp4 with everyone.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="recover body meshes from images, folders or videos",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", type=input_argument, metavar="INPUT",
                   help="image files, folders (searched recursively) or video files")
    p.add_argument("--weights", type=path_argument, metavar="W.safetensors",
                   help="HMR weights (openhmr safetensors, e.g. from 'openhmr convert-tf'); "
                        "selects --method hmr")
    p.add_argument("--smpl", type=path_argument, metavar="MODEL",
                   help="SMPL model file (.pkl or .npz from 'openhmr convert-smpl') the weights "
                        "were made for (weights trained with Anny take none)")
    p.add_argument("--method", choices=("hmr", "fit", "hmr+fit"),
                   help="hmr: the network; fit: fit a body model (the open Anny, or SMPL "
                        "with --smpl) to --openpose or detected keypoints (the default without "
                        "--weights and --smpl); hmr+fit: the network's estimate refined by "
                        "fitting to --openpose or --detect keypoints")
    p.add_argument("--bbox", metavar="x0,y0,x1,y1",
                   help="the person's box in image pixels (used for every input); the box's "
                        "diagonal is scaled to 150 px, as HMR's training crops")
    p.add_argument("--openpose", type=path_argument, metavar="FILE.json",
                   help="OpenPose keypoints (pose_keypoints or pose_keypoints_2d, BODY_25 or "
                        "COCO-18): a file, or a folder as OpenPose's --write_json writes it, "
                        "<stem>_keypoints.json per image and <stem>_<frame, 12 digits>_keypoints.json "
                        "per video frame; the most confident person is used")
    p.add_argument("--detect", action="store_true",
                   help="find the person with the BlazePose detector (needs the 'demo' extra)")
    p.add_argument("--max-people", dest="max_people", type=positive_int, default=1, metavar="N",
                   help="recover up to N people per photo or video frame (default 1: the most "
                        "prominent, as the original): the most confident in the --openpose file, or "
                        "found by the detector one after another; per person <name>_person<k>.* "
                        "(a video's people followed from frame to frame), one overlay with everyone, and "
                        "for photos one <name>_scene mesh with everyone in one camera")
    p.add_argument("--search-every", dest="search_every", type=positive_int, metavar="N",
                   help="videos with the detector: search the whole frame every N frames (default "
                        "10), for people who came in (--max-people N > 1) or, while nobody is "
                        "followed, for a person too small for the half-frame windows; between "
                        "searches people are looked for where they were. 1 finds a newcomer in "
                        "the frame they appear; it costs nothing while N people are followed, "
                        "and ~0.08 s per 983×682 frame while fewer are")
    add_output_options(p, "inputs")
    p.add_argument("--backend", default="auto", metavar="NAME", type=backend_name,
                   help="how HMR's network runs: auto (default: the fastest installed backend "
                        "that agrees with fp32 for these weights, checked when they load; compiled "
                        "ones only for jobs of 5000+ images/frames, where compiling pays off; on "
                        "the CPU eager fp32 for jobs under 40), torch "
                        "(eager fp32), compiled (torch.compile), onnx (ONNX Runtime), bf16, "
                        "compiled-bf16")
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, default=8, metavar="N",
                   help="images per network call, and photos fitted together with --method "
                        "fit|hmr+fit (default: 8; a fit of 8 runs ~3× faster than 8 alone on a CPU; "
                        "1 fits each photo alone, so that its result does not depend on the others); "
                        "videos: chains of at least 16 frames fitted side by side, in two passes "
                        "(1: one frame after another)")
    p.add_argument("--no-world-landmarks", dest="world_landmarks", action="store_false",
                   help="--method fit|hmr+fit with the detector: fit BlazePose's 2D landmarks alone, "
                        "not its 3D world landmarks too (from 2D alone a photo's fit tries 8 starting "
                        "poses; see benchmarks/detected_renders.py)")
    add_noise_option(p, "--method fit|hmr+fit: ")
    add_upright_option(p, "--method fit|hmr+fit: ")
    add_jumps_option(p, "--method fit|hmr+fit with --noise-px, from 2D keypoints alone (--openpose, or "
                        "the detector with --no-world-landmarks): ")
    p.add_argument("--no-render", dest="render", action="store_false",
                   help="write parameters and meshes only, no pictures (faster)")
    p.add_argument("--no-tracking", dest="track", action="store_false",
                   help="videos: treat every frame as a separate photo, not smoothed unless "
                        "--smoothing says so (by default the detector follows the person, each "
                        "fit continues the previous frame's and the estimates are smoothed over "
                        "time)")
    smoothing = p.add_mutually_exclusive_group()  # "--smoothing causal --no-smoothing" is a slip
    smoothing.add_argument("--smoothing", choices=("clip", "causal", "none"),
                                   help="videos: how pose, shape and camera are smoothed over time so the "
                                "body does not tremble: clip (the default: the whole video at once, "
                                "no lag), causal (One-Euro filter, each frame from the frames before "
                                "it), none (the default with --no-tracking)")
    smoothing.add_argument("--no-smoothing", dest="smoothing", action="store_const", const="none",
                           help="videos: the same as --smoothing none")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from openhmr.demo import DemoOptions, run_demo

    options = DemoOptions(
        inputs=list(args.inputs), out=args.out, method=args.method, weights=args.weights,
        smpl=args.smpl, bbox=args.bbox, openpose=args.openpose, detect=args.detect,
        device=args.device, mesh_format=args.mesh_format or "obj", mesh_format_given=args.mesh_format is not None,
        overwrite=args.overwrite,
        skip_existing=args.skip_existing, backend=args.backend, batch_size=args.batch_size, render=args.render,
        track=args.track, smoothing=args.smoothing, max_people=args.max_people,
        world_landmarks=args.world_landmarks, noise_px=args.noise_px,
        search_every=args.search_every,
        fit_config=fit_config(args.upright, args.jumps, args.noise_px), jumps=args.jumps,
    )
    return run_demo(options)
