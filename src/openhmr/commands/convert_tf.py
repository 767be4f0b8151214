"""``openhmr convert-tf PREFIX --out hmr.safetensors``: the original TF checkpoint to openhmr weights."""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

from openhmr.commands import path_argument
from openhmr.errors import InputError, WeightsError


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
    p.add_argument("prefix", type=path_argument, help="checkpoint prefix, without .index / .data-*")
    p.add_argument("--out", type=path_argument, required=True, help="output .safetensors")
    p.add_argument("--smpl-out", type=path_argument, default=None,
                   help="also write the checkpoint's SMPL arrays to this .npz")
    only = p.add_mutually_exclusive_group()
    only.add_argument("--inference-only", action="store_true",
                      help="accept a checkpoint without discriminator variables (D)")
    only.add_argument("--encoder-only", action="store_true",
                      help="write the ResNet-50 v2 encoder alone, e.g. from slim's ImageNet checkpoint "
                      "resnet_v2_50.ckpt, for training's encoder_weights (its classifier is skipped)")
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

    require = (ENCODER,) if args.encoder_only else (ENCODER, REGRESSOR) if args.inference_only else PARTS
    try:
        converted = convert_tf_checkpoint(args.prefix, require=require, require_smpl=args.smpl_out is not None)
    except WeightsError as e:
        if not args.encoder_only and "has no regressor" in str(e):
            raise WeightsError(f"{e}; for an ImageNet encoder (slim's resnet_v2_50) pass --encoder-only") from None
        raise
    tensors, parts = converted.tensors, converted.parts
    if args.encoder_only:
        tensors = {k: v for k, v in tensors.items() if k.startswith(f"{ENCODER}.")}
        parts = (ENCODER,)

    metadata = weights_metadata(
        body_model="smpl", theta_size=SMPL_THETA_SIZE, encoder="resnet50_v2", num_iterations=3,
        parts=parts, source=f"tf:{args.prefix.name}",
    )
    write_weights(args.out, tensors, metadata)
    n_params = sum(a.size for a in tensors.values())
    classifier = "; skipped the ImageNet classifier" if converted.classifier else ""
    print(f"wrote {args.out}: {len(tensors)} tensors ({n_params:,} values; "
          f"{', '.join(parts)}); skipped {converted.skipped} optimiser variables{classifier}")
    if args.encoder_only:
        print("note: the file holds the encoder alone: name it as a training run's encoder_weights")
    elif DISCRIMINATOR not in parts:
        print("note: the checkpoint has no discriminator; the file is for inference and fine-tuning only")
    if args.smpl_out is not None and converted.smpl is not None:
        save_smpl_npz(args.smpl_out, converted.smpl)
        print(f"wrote {args.smpl_out}: SMPL arrays from the checkpoint (no faces)")
    return 0
