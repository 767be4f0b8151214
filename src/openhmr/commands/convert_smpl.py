"""``openhmr convert-smpl IN.pkl OUT.npz``: a SMPL pickle to openhmr's plain npz."""

from __future__ import annotations

import argparse

from openhmr.commands import path_argument


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-smpl",
        help="convert a SMPL .pkl (official or HMR's, no chumpy needed) to .npz",
        description="Read a SMPL model pickle safely (numpy, scipy.sparse and chumpy arrays "
        "only; no chumpy install needed) and write the arrays openhmr uses to an .npz.",
    )
    p.add_argument("input", type=path_argument, help="SMPL .pkl (v1.0/v1.1, male/female/neutral, or HMR's cocoplus file)")
    p.add_argument("output", type=path_argument, help="output .npz")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from openhmr.errors import InputError
    from openhmr.io.output_paths import check_output_file
    from openhmr.io.smpl_file import load_smpl_arrays, save_smpl_npz

    if args.output.suffix != ".npz":  # how openhmr tells an npz model from a pickle
        raise InputError(f"OUTPUT must end in .npz, got {args.output}")
    check_output_file(args.output, args.overwrite, "OUTPUT", inputs=[args.input])
    arrays = load_smpl_arrays(args.input)
    save_smpl_npz(args.output, arrays)
    kept = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items())
    print(f"wrote {args.output}: {kept}")
    return 0
