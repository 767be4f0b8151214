"""``openhmr data``: convert datasets and mocap into openhmr's training formats.

* ``openhmr data convert DATASET ROOT OUT [--split S] [--overwrite] ...``:
  one dataset's own files under ROOT → tar shards + manifest.json in OUT.
* ``openhmr data convert-mocap hmr SET OUT.npz``: one of HMR's MoSh sets
  (``neutrMosh/neutrSMPL_CMU``, ``_H3.6``, ``_jointLim``) → SMPL mocap npz.
* ``openhmr data convert-mocap amass ROOT OUT.npz``: AMASS → SMPL mocap npz.
* ``openhmr data convert-mocap anny-prior COUNT OUT.npz``: samples of the
  Anny model's own pose/shape sampler (a weak prior; no Anny mocap exists).
* ``openhmr data info FOLDER``: what a converted folder holds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from openhmr.commands import input_argument, path_argument, seed


def register(sub: argparse._SubParsersAction) -> None:
    from openhmr.data.datasets import CONVERTERS

    p = sub.add_parser("data", help="convert datasets and mocap for training",
                       description="Convert training datasets (from their own distributed files) "
                       "and mocap into openhmr's formats.")
    actions = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    c = actions.add_parser(
        "convert", help="a dataset's own files → shards",
        description="Read a dataset's distributed files, apply HMR's person scale (~150 px) "
        "and crop, and write tar shards (<name>-00000.tar, ...) and manifest.json.")
    c.add_argument("dataset", choices=list(CONVERTERS), help="which dataset ROOT holds")
    c.add_argument("root", type=path_argument, help="the dataset's folder as distributed")
    c.add_argument("out", type=path_argument, help="output folder for the shards")
    c.add_argument("--split", default="train",
                   help="train (default), test (lsp, coco: val2014, h36m: S9/S11, 3dpw) or validation (3dpw)")
    c.add_argument("--overwrite", action="store_true", help="replace existing shards in OUT")
    c.add_argument("--stride", type=int, default=None,
                   help="keep every n-th frame (h36m: default 5; 3dpw: default 1)")
    c.add_argument("--smpl-fits", type=path_argument, default=None,
                   help="h36m: .npz of SMPL fits (keys, pose (N,72), betas (N,10)) → has_smpl")
    c.add_argument("--smpl-dir", type=path_argument, default=None,
                   help="3dpw: folder of SMPL model files (gendered + HMR's cocoplus file) → 3D joints")
    c.set_defaults(func=run_convert)

    m = actions.add_parser(
        "convert-mocap", help="mocap → pose/shape npz for the adversarial prior",
        description="hmr SET OUT.npz: one of HMR's MoSh sets (neutrMosh/neutrSMPL_CMU, _H3.6 or _jointLim) → "
        "SMPL pose (N,72) and shape (N,10), S9 and S11 left out. amass ROOT OUT.npz: every AMASS .npz "
        "under ROOT → SMPL pose and shape. anny-prior COUNT OUT.npz: COUNT samples of the Anny model's "
        "own sampler.")
    m.add_argument("source", choices=["hmr", "amass", "anny-prior"])
    m.add_argument("input", type=input_argument,
                   help="hmr: the MoSh set's folder; amass: the AMASS folder; anny-prior: the number of samples")
    m.add_argument("out", type=path_argument, help="output .npz")
    m.add_argument("--stride", type=int, default=1, help="amass: keep every n-th frame")
    m.add_argument("--seed", type=seed, default=None, help="anny-prior: random seed (default 0)")
    m.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    m.set_defaults(func=run_convert_mocap)

    i = actions.add_parser("info", help="summarise a converted folder")
    i.add_argument("folder", type=path_argument)
    i.set_defaults(func=run_info)


def run_convert(args: argparse.Namespace) -> int:
    from openhmr.data.datasets import converter

    from openhmr.errors import InputError

    options = {}
    for flag, name, datasets in (("--stride", "stride", ("h36m", "3dpw")),
                                 ("--smpl-fits", "smpl_fits", ("h36m",)),
                                 ("--smpl-dir", "smpl_dir", ("3dpw",))):
        value = getattr(args, name)
        if value is None:
            continue
        if args.dataset not in datasets:
            raise InputError(f"{flag} applies to {' and '.join(datasets)} only, not {args.dataset}")
        options[name] = value
    try:
        manifest = converter(args.dataset).convert(args.root, args.out, split=args.split,
                                                   overwrite=args.overwrite, **options)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
        # Annotation files whose layout is not the dataset's (a missing key, a
        # table of the wrong width): one line, not a traceback. Nothing was
        # written: the shards are swapped in only when the conversion ends.
        what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise InputError(f"{args.root}: the {args.dataset} annotations are not laid out as the dataset "
                         f"distributes them ({what})") from None
    print(f"wrote {manifest['count']} {args.dataset} samples in {len(manifest['shards'])} shard(s) to {args.out}")
    return 0


def run_convert_mocap(args: argparse.Namespace) -> int:
    from openhmr.data import mocap
    from openhmr.errors import InputError
    from openhmr.io.output_paths import check_not_inside, check_output_file

    if args.source != "amass" and args.stride != 1:
        raise InputError("--stride applies to amass only")
    if args.source != "anny-prior" and args.seed is not None:
        raise InputError(f"--seed applies to anny-prior only ({args.source} draws nothing)")
    seed = 0 if args.seed is None else args.seed
    check_output_file(args.out, args.overwrite, "OUT")
    if args.out.suffix != ".npz":  # before the sampling, which takes seconds
        raise InputError(f"the mocap output must be an .npz file, got {args.out}")
    if args.source == "hmr":
        check_not_inside(args.out, Path(args.input), "OUT", "the MoSh folder")
        result = mocap.convert_hmr_mosh(args.input, args.out, overwrite=args.overwrite)
        left_out = f" ({result['left_out']} of S9 and S11 left out)" if result["left_out"] else ""
        print(f"wrote {result['count']} poses from {result['files']} MoSh sequences{left_out} to {args.out}")
        return 0
    if args.source == "amass":
        check_not_inside(args.out, Path(args.input), "OUT", "the AMASS folder")
        result = mocap.convert_amass(args.input, args.out, stride=args.stride, overwrite=args.overwrite)
        print(f"wrote {result['count']} poses from {result['files']} AMASS sequences to {args.out}")
        return 0
    try:
        count = int(args.input)
    except ValueError:
        raise InputError(f"anny-prior takes a sample count, got {args.input!r}") from None
    if count < 1:
        raise InputError(f"the sample count must be positive, got {count}")
    from openhmr.body.anny import Anny
    from openhmr.devices import physical_memory_bytes

    memory = physical_memory_bytes()
    # a sample's pose and shape, float64 while drawn, and their float32 copies: ~1 KB
    if memory is not None and count * 1024 > memory:
        raise InputError(f"not enough memory for {count:,} samples; ask for fewer")
    try:
        pose, shape = mocap.anny_prior(Anny(), count, seed=seed)
    except (MemoryError, RuntimeError) as e:
        if not isinstance(e, MemoryError) and "allocate" not in str(e):
            raise
        raise InputError(f"not enough memory for {count:,} samples; ask for fewer") from None
    mocap.save_mocap(args.out, pose, shape, overwrite=args.overwrite,
                     source=f"Anny random_pose, phenotypes uniform over Anny's range (adult ages), seed {seed} "
                            "(weak prior, not mocap)")
    print(f"wrote {count} Anny prior samples to {args.out}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from openhmr.data.shards import read_manifest

    manifest = read_manifest(args.folder)
    print(f"{args.folder}: {manifest['count']} {manifest['dataset']} samples in "
          f"{len(manifest['shards'])} shard(s), openhmr {manifest.get('openhmr_version', '?')}")
    options = manifest.get("options")
    for key, value in (options.items() if isinstance(options, dict) else ()):
        print(f"  {key}: {value}")
    return 0
