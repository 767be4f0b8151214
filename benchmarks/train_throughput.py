"""Images per second of HMR's full training step, optimised vs a baseline in the same run.

The step is everything ``openhmr.train.Trainer.train_step`` does on the
device: ResNet-50 v2 encoder, 3 IEF iterations, the body model, the
projection and all losses, the discriminator on 3B real + 3B fake samples,
one backward pass, and both Adam steps. Data loading is left out (it runs in
DataLoader workers alongside); a fixed batch already on the device is fed.

On CUDA (batch 64, the paper's):
  baseline  = fp32, NCHW, cudnn.benchmark off
  optimised = bf16 autocast for the encoder + channels_last + cudnn.benchmark
On CPU there is no bf16/channels_last path in the trainer, so the script
runs a tiny batch of the fp32 step only, to show it works, and says so.

Body model: openhmr's synthetic SMPL stand-in (same sizes as SMPL: 6890
vertices, 24 joints), so no licence-gated file is needed.

    python benchmarks/train_throughput.py [--batch 64] [--steps 30] [--warmup 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from openhmr.body import SMPL
from openhmr.body.synthetic import synthetic_smpl_arrays
from openhmr.train import Trainer
from openhmr.training.config import TrainConfig


def make_trainer(body: SMPL, run_dir: str, batch: int, device: str, fast: bool) -> Trainer:
    cfg = TrainConfig(
        data="synthetic", synthetic_samples=2, body_model="synthetic_smpl", encoder="resnet50_v2",
        batch_size=batch, device=device, bf16=fast, channels_last=fast, tensorboard=False,
        num_workers=0, max_steps=10**9, checkpoint_every=10**9, log_every=10**9, image_log_every=10**9,
    )
    trainer = Trainer(cfg, run_dir, body_model=body)
    torch.backends.cudnn.benchmark = fast
    return trainer


def fixed_inputs(trainer: Trainer, batch: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    body = trainer.hmr.body
    size = trainer.cfg.image_size
    inputs = {
        "images": torch.rand(batch, 3, size, size, generator=gen) * 2 - 1,
        "keypoints": torch.cat([torch.rand(batch, 19, 2, generator=gen) * 2 - 1, torch.ones(batch, 19, 1)], -1),
        "has_joints3d": torch.arange(batch) % 2 == 0,
        "has_smpl": torch.arange(batch) % 2 == 0,
        "joints3d": torch.randn(batch, 14, 3, generator=gen) * 0.3,
        "pose": torch.randn(batch, body.pose_size, generator=gen) * 0.2,
        "betas": torch.randn(batch, body.shape_size, generator=gen),
        "mocap_pose": torch.randn(3 * batch, body.pose_size, generator=gen) * 0.2,
        "mocap_betas": torch.randn(3 * batch, body.shape_size, generator=gen),
    }
    out = {k: v.to(trainer.device) for k, v in inputs.items()}
    if trainer.cfg.channels_last and trainer.device.type == "cuda":
        out["images"] = out["images"].contiguous(memory_format=torch.channels_last)
    return out


def images_per_second(trainer: Trainer, inputs: dict[str, torch.Tensor], steps: int, warmup: int) -> float:
    def step() -> None:
        trainer.forward_backward(inputs)
        trainer.e_opt.step()
        if trainer.d_opt is not None:  # None only for an encoder-only run
            trainer.d_opt.step()

    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * inputs["images"].shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="default: 64 on CUDA, 4 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="default: 30 on CUDA, 3 on CPU")
    parser.add_argument("--warmup", type=int, default=None, help="default: 5 on CUDA, 1 on CPU")
    args = parser.parse_args()
    if args.batch is not None and args.batch < 2:
        parser.error("--batch must be at least 2 (the trainer's batch norm needs two images)")
    if any(n is not None and n < (1 if name == "steps" else 0)
           for name, n in (("steps", args.steps), ("warmup", args.warmup))):
        parser.error("--steps must be at least 1 and --warmup at least 0")
    cuda = torch.cuda.is_available()
    batch = args.batch or (64 if cuda else 4)
    steps = args.steps or (30 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    body = SMPL(synthetic_smpl_arrays())

    if not cuda:
        print(f"no CUDA device: measuring the fp32 step on CPU at batch {batch} "
              "(bf16 autocast and channels_last are CUDA-only in the trainer)")
        with tempfile.TemporaryDirectory() as run:
            trainer = make_trainer(body, run, batch, "cpu", fast=False)
            rate = images_per_second(trainer, fixed_inputs(trainer, batch), steps, warmup)
        print(f"cpu fp32 batch {batch}: {rate:.2f} images/s")
        return

    name = torch.cuda.get_device_name()
    results = {}
    for label, fast in (("baseline fp32 NCHW", False), ("bf16 autocast + channels_last", True)):
        with tempfile.TemporaryDirectory() as run:
            trainer = make_trainer(body, run, batch, "cuda", fast)
            results[label] = images_per_second(trainer, fixed_inputs(trainer, batch), steps, warmup)
            del trainer
            torch.cuda.empty_cache()
        print(f"{name} batch {batch} {label}: {results[label]:.1f} images/s")
    base_rate, fast_rate = results.values()
    print(f"speed-up of the optimised step over the baseline: {fast_rate / base_rate:.2f}x")


if __name__ == "__main__":
    main()
