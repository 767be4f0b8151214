"""``openhmr eval``: score a model or a predictions file on a benchmark protocol."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from openhmr.commands import device_name, path_argument, positive_int

if TYPE_CHECKING:
    from openhmr.evaluate.benchmark import ImageRef

PROTOCOL_CHOICES = ("h36m-p1", "h36m-p2", "3dpw", "3dhp", "lsp")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate on Human3.6M (P1/P2), 3DPW, MPI-INF-3DHP or LSP",
        description="Score HMR (--weights), the open default (--fit) or any tool's predictions "
        "(--predictions) on a benchmark read from the dataset as its owners distribute it. "
        "Prints the papers' "
        "table (per action/sequence/activity, mean and median) and, with --out, writes "
        "metrics.csv and metrics.json. Errors are in millimetres; PCK and AUC in percent.",
    )
    p.add_argument("--protocol", required=True, choices=PROTOCOL_CHOICES)
    p.add_argument("--data", required=True, type=path_argument, help="the dataset folder (see README: Evaluation)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--weights", type=path_argument,
                     help="HMR weights (.safetensors); needs --smpl, unless they were trained with Anny")
    src.add_argument("--fit", action="store_true",
                     help="the open default: BlazePose on each ground-truth crop and the Anny body "
                     "(or --smpl's) fitted to it, as 'openhmr demo --method fit' (needs the demo extra)")
    src.add_argument("--predictions", type=path_argument,
                     help="predictions .npz: keys (N,), joints3d (N,14,3) m or "
                     "keypoints3d_h36m17 (N,17,3) m, optional vertices; lsp: keypoints2d (N,14,2) px")
    p.add_argument("--fit-body", dest="fit_body", choices=("anny", "smpl"), default=None,
                   help="with --fit: the body fitted (default: smpl when --smpl is given, else anny; "
                   "3dpw needs --smpl for its LSP joints, so 'anny' scores the open default there)")
    p.add_argument("--no-world-landmarks", dest="world_landmarks", action="store_false",
                   help="with --fit: fit BlazePose's 2D keypoints alone, not its 3D world landmarks "
                   "too (as 'openhmr demo --no-world-landmarks')")
    p.add_argument("--smpl", type=path_argument,
                   help="SMPL model file with HMR's cocoplus regressor (for --weights, or with --fit "
                   "to fit SMPL instead of Anny; for 3dpw also the source of the LSP joint regressor)")
    p.add_argument("--smpl-dir", type=path_argument, help="3dpw: folder with the male and female SMPL models")
    p.add_argument("--out", type=path_argument, default=None, help="write metrics.csv and metrics.json here")
    p.add_argument("--save-predictions", dest="save_predictions", type=path_argument, default=None, metavar="FILE.npz",
                   help="with --weights or --fit: also write the predictions as a --predictions file, "
                   "to score again or compare later without rerunning")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs: the metrics files in --out, --list-frames, --save-predictions")
    p.add_argument("--batch-size", type=positive_int, default=32,
                   help="images per network batch (--weights) or per batched fit (--fit)")
    p.add_argument("--device", type=device_name, default="cpu", help="cpu or cuda, for the network of --weights (--fit runs on the CPU)")
    p.add_argument("--frame-step", type=positive_int, default=None,
                   help="h36m: score every N-th frame of the 50 fps videos (default 5 = 10 fps)")
    p.add_argument("--allow-partial", action="store_true",
                   help="h36m/3dhp: score the sequences present instead of refusing when some are missing")
    p.add_argument("--3dhp-annotation", dest="annotation", default=None,
                   choices=("univ_annot3", "annot3"), help="3dhp ground truth (default and official: univ_annot3)")
    p.add_argument("--list-frames", type=path_argument, default=None,
                   help="write the protocol's frame keys, one per line, to this file and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from openhmr.devices import require_device
    from openhmr.errors import InputError
    from openhmr.evaluate import load_benchmark, load_predictions, score
    from openhmr.evaluate.predictions import predict_with_fit, predict_with_hmr, save_predictions
    from openhmr.evaluate.runner import METRICS_FILES, format_headline
    from openhmr.io.hmr_weights import require_weights_file
    from openhmr.io.output_paths import (check_distinct, check_not_inside, check_output_file,
                                         check_output_folder, replacing)

    if args.list_frames is None and args.weights is None and args.predictions is None and not args.fit:
        raise InputError("give --weights (with --smpl for SMPL's), --fit or --predictions FILE.npz")
    if args.list_frames is not None:
        # it writes the keys and stops: what would predict or score is refused, not dropped
        for option, given in (("--weights", args.weights is not None), ("--fit", args.fit),
                              ("--predictions", args.predictions is not None), ("--out", args.out is not None),
                              ("--smpl", args.smpl is not None), ("--smpl-dir", args.smpl_dir is not None),
                              ("--device", str(args.device) != "cpu")):
            if given:
                raise InputError(f"--list-frames writes the frame keys and stops; {option} would do "
                                 "nothing with it: run them apart")
    elif args.predictions is not None and args.smpl is not None and args.protocol != "3dpw":
        raise InputError(f"--smpl is not used to score --predictions on {args.protocol} "
                         "(only 3dpw reads its LSP joint regressor)")
    # Options of one protocol's reader are refused with another, not ignored.
    for option, given, protocols in (
            ("--frame-step", args.frame_step is not None, ("h36m-p1", "h36m-p2")),
            ("--smpl-dir", args.smpl_dir is not None, ("3dpw",)),
            ("--allow-partial", args.allow_partial, ("h36m-p1", "h36m-p2", "3dhp")),
            ("--3dhp-annotation", args.annotation is not None, ("3dhp",))):
        if given and args.protocol not in protocols:
            raise InputError(f"{option} goes with --protocol {' or '.join(protocols)}, not {args.protocol}")
    if not args.world_landmarks and not args.fit:
        raise InputError("--no-world-landmarks goes with --fit")
    if args.fit_body is not None and not args.fit:
        raise InputError("--fit-body goes with --fit")
    fit_smpl = (args.fit_body or ("smpl" if args.smpl is not None else "anny")) == "smpl"
    if args.fit and fit_smpl and args.smpl is None:
        raise InputError("--fit-body smpl needs --smpl, the SMPL file to fit")
    if args.fit and args.list_frames is None:
        import importlib.util

        if importlib.util.find_spec("mediapipe") is None:
            raise InputError("--fit needs the BlazePose detector: pip install 'openhmr[demo]'")
    if args.weights is not None:
        require_device(args.device)  # now, not once the benchmark has loaded
    elif str(args.device) != "cpu" and args.list_frames is None:
        raise InputError(f"--device {args.device} goes with --weights: --fit runs on the CPU, "
                         "and --predictions computes nothing")
    from openhmr.io.hmr_weights import weights_made_for

    # weights trained with Anny drive Anny (its lsp14 and h36m17 keypoints): no SMPL file for them
    if args.weights is not None:
        require_weights_file(args.weights)  # a missing file is said as such, not as a missing --smpl
    anny_weights = args.weights is not None and weights_made_for(args.weights) == "anny"
    if args.weights is not None and args.smpl is None and not anny_weights:
        raise InputError("--weights needs --smpl, the SMPL file with HMR's cocoplus regressor")
    if anny_weights and args.smpl is not None and args.protocol != "3dpw":
        raise InputError(f"{Path(args.weights).name} was trained with the Anny body model: leave --smpl out "
                         "(3dpw alone reads it, for its ground truth)")
    # Outputs are checked now, not after the whole benchmark has run: none may
    # be an input, a file of the dataset, or another output.
    inputs = [p for p in (args.weights, args.smpl, args.predictions) if p is not None]
    outputs: dict[str, Path] = {}
    if args.list_frames is not None:
        check_output_file(args.list_frames, args.overwrite, "--list-frames", inputs=inputs)
        outputs["--list-frames"] = args.list_frames
    if args.save_predictions is not None:
        if args.predictions is not None or args.list_frames is not None:
            raise InputError("--save-predictions writes what --weights or --fit predict")
        if args.save_predictions.suffix != ".npz":
            raise InputError(f"--save-predictions must be an .npz file, got {args.save_predictions}")
        check_output_file(args.save_predictions, args.overwrite, "--save-predictions", inputs=inputs)
        outputs["--save-predictions"] = args.save_predictions
    if args.out is not None and args.list_frames is None:
        check_output_folder(args.out, "--out")
        for name in METRICS_FILES:
            check_output_file(args.out / name, args.overwrite, "--out", inputs=inputs)
            outputs[f"--out's {name}"] = args.out / name
    check_distinct(outputs)
    for option, path in outputs.items():
        check_not_inside(path, args.data, option.split("'")[0], "the dataset folder --data")
    # The inputs too, before the benchmark loads (on the real datasets, minutes).
    if args.smpl is not None and (args.weights is not None or (args.fit and fit_smpl)) and not Path(args.smpl).is_file():
        raise InputError(f"--smpl {args.smpl} is not a file")
    if args.predictions is not None and not Path(args.predictions).is_file():
        raise InputError(f"predictions file not found: {args.predictions}")

    if args.list_frames is not None:
        if args.protocol == "3dpw":  # the keys need the sequence files, not the SMPL models
            from openhmr.evaluate import pw3d

            keys = pw3d.frame_keys(args.data)
        else:
            keys = load_benchmark(args.protocol, args.data, frame_step=args.frame_step or 5,
                                  allow_partial=args.allow_partial,
                                  annotation=args.annotation or "univ_annot3").keys
        with replacing(args.list_frames) as tmp:
            tmp.write_text("".join(k + "\n" for k in keys))
        print(f"wrote {len(keys)} frame keys of {args.protocol} to {args.list_frames}")
        return 0
    bench = load_benchmark(
        args.protocol, args.data, frame_step=args.frame_step or 5, allow_partial=args.allow_partial,
        smpl_dir=args.smpl_dir, smpl=args.smpl, annotation=args.annotation or "univ_annot3",
    )
    if args.predictions is not None:
        preds = load_predictions(args.predictions, bench.keys, need_2d=args.protocol == "lsp")
        source = str(args.predictions)
    elif args.fit:
        if bench.images is None:
            raise InputError(f"{args.protocol} cannot locate images for a fit run")
        images = _present(bench.images())
        body = None  # Anny
        if fit_smpl:
            from openhmr.body.smpl import SMPL

            body = SMPL(args.smpl)
        fitted = predict_with_fit(images, body, args.batch_size,
                                  keep_vertices=bench.gt_vertices is not None and fit_smpl,
                                  world_landmarks=args.world_landmarks)
        preds = fitted.predictions
        assert preds.keypoints2d is not None  # predict_with_fit predicts every frame's keypoints
        preds.keypoints2d = preds.keypoints2d + bench.pixel_offset
        source = (f"fit ({'SMPL ' + str(args.smpl) if fit_smpl else 'Anny'}, BlazePose"
                  f"{'' if args.world_landmarks else ', 2D keypoints alone'})")
        if fitted.undetected:
            print(f"openhmr eval: BlazePose found nobody (or no keypoint to fit) in {fitted.undetected} of "
                  f"{len(bench)} crops; those frames are scored as the rest pose", file=sys.stderr)
    else:
        if bench.images is None:
            raise InputError(f"{args.protocol} cannot locate images for a network run")
        # Anny's mesh is not SMPL's: no PVE for it
        preds = predict_with_hmr(_present(bench.images()), args.weights, None if anny_weights else args.smpl,
                                 args.device, args.batch_size,
                                 keep_vertices=bench.gt_vertices is not None and not anny_weights)
        if preds.keypoints2d is not None:
            preds.keypoints2d = preds.keypoints2d + bench.pixel_offset
        source = str(args.weights)
    if args.save_predictions is not None:
        save_predictions(args.save_predictions, bench.keys, preds)
        print(f"wrote the predictions of {len(bench)} frames to {args.save_predictions}")
    report = score(bench, preds)
    report.settings["predictions"] = source
    print(report.table())
    print(format_headline(report))
    if args.out is not None:
        csv_path, json_path = report.write(args.out, overwrite=args.overwrite)
        print(f"wrote {csv_path} and {json_path}")
    return 0


def _present(refs: list[ImageRef]) -> list[ImageRef]:
    """``refs``, once every image and video they name is known to exist: a
    missing one is said now, not after the frames before it have been run."""
    from openhmr.errors import InputError

    for path in dict.fromkeys(ref.path for ref in refs):
        if not Path(path).is_file():
            raise InputError(f"{path}: the benchmark's image or video is missing")
    return refs
