"""``openhmr bench``: how fast HMR runs here, with each backend, against eager fp32."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Time HMR's whole inference path (crop → network → Θ → body vertices and
keypoints, as the demo runs it) with each inference backend, on this machine,
against eager fp32 PyTorch measured in the same run; also each backend's
one-off cost (ONNX export, cached; torch.compile's compilation per batch
size) and how far its result is from fp32 (worst vertex mm / 2D keypoint px
on the 224 crop; above 5 mm / 1 px, 'auto' would not pick it).

Without --weights the network has random weights of the real shapes with
trained-like activation statistics, and SMPL is a synthetic stand-in: speed
does not depend on the values, but reduced-precision accuracy does, so give
your weights (--weights and --smpl) to see whether bf16 is accurate enough
for them. Crops are synthetic, or the images of --images taken as tight crops.
Backends take turns in blocks of calls, so a load from other programs hits
them alike; the medians are printed.
"""

DEFAULT_BACKENDS = ("torch", "onnx", "bf16", "compiled", "compiled-bf16")


def register(subparsers: argparse._SubParsersAction) -> None:
    from openhmr.commands import device_name, path_argument, positive_int, timed_backend_name

    p = subparsers.add_parser(
        "bench", help="time the inference backends against eager PyTorch on this machine",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--weights", type=path_argument, metavar="W.safetensors",
                   help="HMR weights to time (default: random weights of the real shapes)")
    p.add_argument("--smpl", type=path_argument, metavar="MODEL",
                   help="SMPL model file (.pkl or .npz) the weights were made for (with --weights; "
                        "weights trained with Anny take none)")
    p.add_argument("--backends", nargs="+", default=list(DEFAULT_BACKENDS), metavar="NAME", type=timed_backend_name,
                   help=f"backends to time (default: {' '.join(DEFAULT_BACKENDS)}); eager fp32 "
                        "'torch' always runs, as the baseline")
    p.add_argument("--batch", type=positive_int, nargs="+", default=[1, 8], metavar="N",
                   help="batch sizes (default: 1 8)")
    p.add_argument("--repeats", type=positive_int, default=20, metavar="N",
                   help="timed calls per backend and batch size (default: 20)")
    p.add_argument("--images", type=path_argument, metavar="DIR",
                   help="folder of person images, taken as tight crops (default: synthetic crops)")
    p.add_argument("--device", type=device_name, default="cpu", metavar="cpu|cuda",
                   help="torch device (default: cpu)")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--json", type=path_argument, metavar="FILE", help="also write the figures to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace --json if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import sys

    import torch

    from openhmr.devices import require_device
    from openhmr.errors import InputError
    from openhmr.inference.backends import BACKENDS, available_backends
    from openhmr.inference.timing import bench_backends
    from openhmr.io.hmr_weights import require_weights_file
    from openhmr.io.output_paths import check_not_inside, check_output_file, replacing

    unknown = [n for n in args.backends if n not in BACKENDS or n == "auto"]
    if unknown:
        raise InputError(f"unknown backend {unknown[0]!r}; choose from "
                         f"{', '.join(n for n in BACKENDS if n != 'auto')}")
    from openhmr.io.hmr_weights import weights_made_for

    if args.weights is not None:
        require_weights_file(args.weights)  # a missing file is said as such, not as a missing --smpl
    anny_weights = args.weights is not None and weights_made_for(args.weights) == "anny"  # they take no SMPL
    if args.smpl is not None and args.weights is None or args.weights is not None and args.smpl is None \
            and not anny_weights:
        raise InputError("--weights and --smpl go together (the weights and the SMPL file they were made for)")
    if args.json is not None:
        check_output_file(args.json, args.overwrite, "--json",
                          inputs=[p for p in (args.weights, args.smpl) if p is not None])
        check_not_inside(args.json, args.images, "--json", "the --images folder")
    if args.threads and args.threads > 4 * (os.cpu_count() or 1):
        raise InputError(f"--threads {args.threads} is more than 4× this machine's {os.cpu_count()} CPUs")
    device = require_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    def log(message: str) -> None:
        print(f"openhmr bench: {message}", file=sys.stderr, flush=True)

    args.batch = sorted(set(args.batch))  # each size timed once, in the order the timings come
    # Agreement is measured on at least 8 crops, timing uses the first ones.
    count = max(8, *args.batch)
    if args.images is not None:
        from openhmr.data.crop import folder_tight_crops

        try:
            crops = folder_tight_crops(args.images, limit=count)
        except InputError as e:
            raise InputError(f"--images: {e}") from None
        source = f"{len(crops)} image(s) of {args.images}"
        crops = crops.repeat(-(-count // len(crops)), 1, 1, 1)[:count].contiguous()
    else:
        from openhmr.inference.calibrated import synthetic_crops

        crops, source = synthetic_crops(count, seed=7), "synthetic crops"

    if args.weights is not None:
        from openhmr.demo import load_hmr

        log(f"loading {args.weights.name}")
        model, _ = load_hmr(args.weights, args.smpl, torch.device("cpu"))
        weights = str(args.weights)
    else:
        from openhmr.body import SMPL
        from openhmr.body.synthetic import synthetic_smpl_arrays
        from openhmr.inference.calibrated import TRAINED_LIKE_RESIDUAL_GAIN, calibrated_random_hmr

        log("building a random HMR (real shapes, trained-like activations) on synthetic SMPL")
        model = calibrated_random_hmr(SMPL(synthetic_smpl_arrays()), images=crops[:8],
                                      residual_gain=TRAINED_LIKE_RESIDUAL_GAIN)
        weights = "random (calibrated)"

    reasons = available_backends(device)
    names = []
    for name in args.backends:
        if reasons.get(name):
            log(f"{name} skipped: {reasons[name]}")
        else:
            names.append(name)
    timings, unavailable = bench_backends(model, names, args.batch, crops, args.repeats, device, log)
    for name, why in unavailable.items():
        log(f"{name} skipped: {why}")

    baseline = timings[0]
    print(f"\nopenhmr bench: crop → Θ → body on {device}"
          + (f" ({torch.get_num_threads()} threads, {os.cpu_count()} CPUs)" if device.type == "cpu"
             else f" ({torch.cuda.get_device_name(device)})")
          + f"; torch {torch.__version__}; weights: {weights}; crops: {source}; "
          f"median of ≥ {args.repeats} calls")
    head = ("| backend | " + " | ".join(f"batch {b}: ms per call | ms per crop | × fp32" for b in args.batch)
            + " | vs fp32: mm / px | one-off s |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for t in timings:
        cells = []
        for b in args.batch:
            cells += [f"{t.median_ms[b]:.1f}", f"{t.median_ms[b] / b:.1f}",
                      f"{baseline.median_ms[b] / t.median_ms[b]:.2f}"]
        a = t.agreement
        accuracy = "reference" if a is None else (
            f"{a.vertex_mm:.2g} / {a.keypoint_px:.2g}" + ("" if a.within() else " ✗ (outside 5 mm / 1 px)"))
        print(f"| {t.name} | " + " | ".join(cells) + f" | {accuracy} | {t.one_off_s:.1f} |")
    print("× fp32: eager fp32's median time over the backend's (higher is faster). one-off: building "
          "the backend plus its first call at each batch size (compilation, export).")
    if args.json is not None:
        figures = json.dumps({
            "device": str(device), "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "weights": weights, "crops": source, "repeats": args.repeats,
            "batches": args.batch, "backends": [t.as_dict() for t in timings], "skipped": {
                **{n: reasons[n] for n in args.backends if reasons.get(n)}, **unavailable},
        }, indent=2)
        with replacing(args.json) as tmp:
            tmp.write_text(figures)
        log(f"wrote {args.json}")
    return 0
