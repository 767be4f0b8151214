"""``openhmr convert-tf PREFIX --out hmr.safetensors``: the original TF checkpoint to openhmr weights."""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

from openhmr.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-tf",
        help="convert the original HMR TensorFlow checkpoint to .safetensors (no TensorFlow needed)",
        description="Read HMR's released TF checkpoint (e.g. models/model.ckpt-667589 with its "
        ".index and .data-00000-of-00001 files) and write the encoder, regressor, mean "
        "parameters and discriminator as .safetensors for HMR.from_pretrained. Optimiser "
        "state is dropped. The SMPL arrays stored in the checkpoint can be written as an "
        ".npz (it has no faces; take them from a SMPL file for rendering).",
    )
    p.add_argument("prefix", type=Path, help="checkpoint prefix, without .index / .data-*")
    p.add_argument("--out", type=Path, required=True, help="output .safetensors")
    p.add_argument("--smpl-out", type=Path, default=None,
                   help="also write the checkpoint's SMPL arrays to this .npz")
    p.add_argument("--inference-only", action="store_true",
                   help="accept a checkpoint without discriminator variables (D)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from openhmr.io.hmr_weights import (
        DISCRIMINATOR, ENCODER, PARTS, REGRESSOR, SMPL_THETA_SIZE, convert_tf_checkpoint,
        weights_metadata, write_weights,
    )
    from openhmr.io.output_paths import check_distinct, check_output_file
    from openhmr.io.smpl_file import save_smpl_npz

    checkpoint = [Path(f"{args.prefix}.index"), *args.prefix.parent.glob(f"{glob.escape(args.prefix.name)}.data-*")]
    check_distinct({"--out": args.out, "--smpl-out": args.smpl_out})
    for option, path in (("--out", args.out), ("--smpl-out", args.smpl_out)):
        if path is not None:
            check_output_file(path, args.overwrite, option, inputs=checkpoint)
    if args.smpl_out is not None and args.smpl_out.suffix != ".npz":
        raise InputError(f"--smpl-out must end in .npz, got {args.smpl_out}")

    require = (ENCODER, REGRESSOR) if args.inference_only else PARTS
    converted = convert_tf_checkpoint(args.prefix, require=require, require_smpl=args.smpl_out is not None)

    metadata = weights_metadata(
        body_model="smpl", theta_size=SMPL_THETA_SIZE, encoder="resnet50_v2", num_iterations=3,
        parts=converted.parts, source=f"tf:{args.prefix.name}",
    )
    write_weights(args.out, converted.tensors, metadata)
    n_params = sum(a.size for a in converted.tensors.values())
    print(f"wrote {args.out}: {len(converted.tensors)} tensors ({n_params:,} values; "
          f"{', '.join(converted.parts)}); skipped {converted.skipped} optimiser variables")
    if DISCRIMINATOR not in converted.parts:
        print("note: the checkpoint has no discriminator; the file is for inference and fine-tuning only")
    if args.smpl_out is not None and converted.smpl is not None:
        save_smpl_npz(args.smpl_out, converted.smpl)
        print(f"wrote {args.smpl_out}: SMPL arrays from the checkpoint (no faces)")
    return 0
