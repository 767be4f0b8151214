"""``openhmr train``: train HMR from a YAML config (single process or under torchrun)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from openhmr.commands import path_argument


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train HMR (the original's losses, adversarial prior and batches; resumable; DDP via torchrun)",
        description="Train HMR as the original did (do_train.sh settings by default). Options come from "
        "--config and key=value overrides; the merged config is saved as RUN/config.yaml. Under "
        "`torchrun --nproc_per_node N -m openhmr train ...` each process trains on its own batch_size "
        "crops and gradients are averaged.",
    )
    p.add_argument("--config", type=path_argument, help="training config YAML (e.g. configs/hmr_paper.yaml); "
                   "with --resume, defaults to RUN/config.yaml")
    p.add_argument("--out", type=path_argument, help="run folder for checkpoints, logs and weights "
                   "(default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress report (bar or lines)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override config options, e.g. batch_size=32 datasets_2d=[lsp,coco]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from openhmr.errors import InputError
    from openhmr.io.output_paths import check_output_folder
    from openhmr.train import CONFIG_FILE, Trainer
    from openhmr.training.config import TrainConfig

    if args.config is None and not args.resume:
        raise InputError("pass --config CFG.yaml (see configs/), or --out RUN --resume")
    out = args.out
    if out is None:
        if args.config is None:
            raise InputError("--resume needs --out RUN (the run folder to continue)")
        out = Path("runs") / args.config.stem
    check_output_folder(out)
    if args.resume and args.config is None and not (out / CONFIG_FILE).is_file():
        raise InputError(f"no run to resume in {out}: it holds no {CONFIG_FILE}")
    config_path = args.config if args.config is not None else out / CONFIG_FILE
    cfg = TrainConfig.load(config_path, args.overrides)
    trainer = Trainer(cfg, out, resume=args.resume)
    try:
        if trainer.dist.is_main:
            where = f"resuming at step {trainer.step}" if args.resume else "starting at step 0"
            print(f"openhmr train: {where} of {trainer.total_steps} in {out} "
                  f"({trainer.dist.world_size} process(es), {trainer.device})", file=sys.stderr, flush=True)
            if cfg.data == "shards" and cfg.image_size != 224:
                # the shards' people are ~150 px tall, framed for HMR's 224-px crop
                print(f"openhmr train: warning: image_size {cfg.image_size} cuts a {cfg.image_size}-px window "
                      "around people scaled for 224-px crops (HMR's, which demo, eval and export-onnx use)",
                      file=sys.stderr, flush=True)
            if trainer.step >= trainer.total_steps > 0 and args.resume:
                print(f"openhmr train: warning: the run is at step {trainer.step}, past its {trainer.total_steps} "
                      "steps: nothing is trained, its final weights are written from that step",
                      file=sys.stderr, flush=True)
        trainer.run(progress=not args.no_progress)
        weights = trainer.save_weights()
    except BaseException:
        if trainer.close(completed=False):
            print(f"openhmr train: the run stopped before its first checkpoint; removed its {CONFIG_FILE} "
                  "and TensorBoard events, so the same command can start it again", file=sys.stderr)
        raise
    trainer.close()
    if trainer.dist.is_main:
        print(f"openhmr train: done at step {trainer.step}; weights in {weights}", file=sys.stderr)
    return 0
