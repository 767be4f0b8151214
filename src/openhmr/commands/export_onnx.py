"""``openhmr export-onnx``: HMR weights → an ONNX graph for ONNX Runtime or other engines."""

from __future__ import annotations

import argparse
from pathlib import Path

from openhmr.commands import path_argument

DESCRIPTION = """\
Export HMR's network (ResNet-50 encoder + IEF regressor) to one ONNX file:
input 'crops' (B, 3, 224, 224) float32 RGB in [-1, 1], output 'theta'
(B, 85 for SMPL) = camera (s, tx, ty), pose (72 axis-angle), shape (10), the
last IEF iteration. With --with-body the SMPL layer is in the graph too and
'vertices' (B, 6890, 3), 'joints' (B, 24, 3) and 'kp3d_<set>' (B, K, 3)
(metres, body frame) are added.

--int8 also quantises the convolutions to int8 (ONNX Runtime static
quantisation, calibrated on --calibration images or on synthetic crops) and
prints how far the int8 result is from fp32 on probe crops (vertices in mm,
2D keypoints in pixels of the 224 crop). int8 was outside openhmr's
5 mm / 1 px tolerance on every model measured, which is why no --backend
picks it: check the printed figures before using the file.

Run the file with any ONNX Runtime, or in Python with
openhmr.inference.load_predictor("hmr.onnx", body_model). (`openhmr demo
--backend onnx` exports and caches its own fp32 graph from the .safetensors
weights; it does not read this file.)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export-onnx", help="export HMR to an ONNX graph (optionally int8)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--weights", type=path_argument, required=True, metavar="W.safetensors",
                   help="HMR weights (openhmr safetensors, e.g. from 'openhmr convert-tf')")
    p.add_argument("--smpl", type=path_argument, metavar="MODEL",
                   help="SMPL model file (.pkl or .npz) the weights were made for (weights trained with "
                        "the Anny body model take none)")
    p.add_argument("--out", type=path_argument, required=True, metavar="hmr.onnx", help="ONNX file to write")
    p.add_argument("--batch", type=parse_batch, default=None, metavar="N|dynamic",
                   help="fixed batch size, or 'dynamic' for any (default: dynamic)")
    p.add_argument("--with-body", dest="with_body", action="store_true",
                   help="include the SMPL body model in the graph (outputs vertices and joints too)")
    p.add_argument("--int8", action="store_true",
                   help="quantise convolutions to int8 (static, calibrated; see above)")
    p.add_argument("--calibration", type=path_argument, metavar="DIR",
                   help="folder of person images to calibrate int8 on (the first 32, or --batch "
                        "if larger, each taken as a tight crop; default: synthetic crops)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run)


def parse_batch(text: str) -> int | None:
    """argparse type: ``"dynamic"`` → None; a positive integer → itself."""
    if str(text).lower() == "dynamic":
        return None
    try:
        batch = int(text)
    except ValueError:
        batch = 0
    if batch < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'dynamic', got {text!r}")
    return batch


#: How many --calibration images int8's scales are taken from (more when a
#: fixed --batch is larger: the graph is run a whole batch at a time).
CALIBRATION_IMAGES = 32


def run(args: argparse.Namespace) -> int:
    import shutil
    import sys
    import tempfile

    from openhmr.body.base import BodyModel
    from openhmr.body.smpl import SMPL
    from openhmr.data.crop import folder_tight_crops
    from openhmr.errors import InputError
    from openhmr.inference.calibrated import synthetic_crops
    from openhmr.inference.onnx import OnnxPredictor, export_onnx, onnx_available, quantize_int8
    from openhmr.inference.predictor import ThetaNetwork, TorchPredictor
    from openhmr.inference.backends import check_agreement
    from openhmr.io.hmr_weights import require_weights_file
    from openhmr.io.output_paths import check_not_inside, check_output_file, replacing
    from openhmr.nets import HMR

    batch = args.batch
    missing = onnx_available()
    if missing:
        raise InputError(f"export-onnx needs ONNX: {missing}")
    if args.calibration and not args.int8:
        raise InputError("--calibration sets int8's scales; add --int8, or leave it out")
    from openhmr.io.hmr_weights import weights_made_for

    require_weights_file(args.weights)  # a missing file is said as such, not as a missing --smpl
    anny_weights = weights_made_for(args.weights) == "anny"
    if anny_weights and args.smpl is not None:
        raise InputError(f"{args.weights.name} was trained with the Anny body model: leave --smpl out")
    if not anny_weights and args.smpl is None:
        raise InputError("--smpl is needed: the SMPL model file the weights were made for")
    if anny_weights and args.with_body:
        raise InputError("the Anny body model does not go into an ONNX graph: leave --with-body out")
    check_output_file(args.out, args.overwrite, "--out", inputs=[p for p in (args.weights, args.smpl) if p])
    check_not_inside(args.out, args.calibration, "--out", "the --calibration folder")
    calibration = None
    if args.calibration:
        try:
            # 32 images calibrate; a fixed batch larger than that needs a batch of them
            calibration = folder_tight_crops(args.calibration, limit=max(CALIBRATION_IMAGES, batch or 1))
        except InputError as e:
            raise InputError(f"--calibration: {e}") from None
    if batch is not None and calibration is not None and len(calibration) < batch:
        raise InputError(f"--calibration has {len(calibration)} images; a batch-{batch} graph needs at least {batch}")
    if anny_weights:
        from openhmr.body.anny import Anny

        body: BodyModel = Anny()
    else:
        body = SMPL(args.smpl)
    model = HMR.from_pretrained(args.weights, body_model=body)
    print(f"openhmr export-onnx: exporting {args.weights.name} "
          f"(batch {'dynamic' if batch is None else batch}{', with SMPL' if args.with_body else ''})",
          file=sys.stderr)
    if not args.int8:
        export_onnx(model, args.out, batch=batch, include_body=args.with_body, overwrite=True)
        print(f"openhmr export-onnx: wrote {args.out}", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fp32, quantised = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        export_onnx(model, fp32, batch=batch, include_body=args.with_body, overwrite=True)
        crops = calibration if calibration is not None else synthetic_crops(max(16, batch or 1), seed=1234)
        print(f"openhmr export-onnx: calibrating int8 on {len(crops)} "
              f"{'images' if calibration is not None else 'synthetic crops'}", file=sys.stderr)
        quantize_int8(fp32, quantised, crops, overwrite=True)
        # Checked before it takes its name: stopped during the check, it left a file
        # whose figures were never said, and a rerun refused to replace it.
        probe = synthetic_crops(max(4, batch or 1), seed=4321)[: max(4, batch or 1)]
        reference = TorchPredictor(ThetaNetwork(model.encoder, model.regressor), body)
        int8 = OnnxPredictor(quantised, body)
        if batch is None:
            agreement = check_agreement(reference, int8, probe)
        else:
            from openhmr.inference.predictor import compare_thetas

            agreement = compare_thetas(body, reference.theta(probe[:batch]), int8.theta(probe[:batch]))
        with replacing(args.out) as out:
            shutil.copyfile(quantised, out)
    print(f"openhmr export-onnx: wrote {args.out}; int8 vs fp32 on probe crops: {agreement}"
          + ("" if agreement.within() else " — outside the 5 mm / 1 px tolerance, prefer fp32"),
          file=sys.stderr)
    return 0
