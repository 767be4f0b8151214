"""HMR's training step with Anny: keypoints alone against posing the mesh, in the same run.

The step's losses use Anny's joints, rotations and keypoints, never its mesh.
``HMRTrainer`` therefore decodes Θ with ``HMR.decode(theta, mesh=False)``,
which runs ``Anny.forward_keypoints`` (~250 points posed through the 30
bones openhmr rotates). The baseline is the same step with the mesh posed,
as every step did before (``Anny.forward``: the blend shapes and skinning of
every vertex). Both give the same losses and gradients to float32 round-off
(tests/test_train.py).

Printed, for each: the body model alone (forward + backward at the step's
batch: once for Θ₃ and, when stage losses are logged, not at all) and the
whole step (``Trainer.forward_backward`` and both Adam steps, a fixed batch
already on the device, as ``benchmarks/train_throughput.py``), with the ratio
baseline / keypoints. ResNet-50 v2 encoder, fp32; on CUDA also bf16 autocast
and channels_last.

Usage: python benchmarks/anny_train_step.py [--batch 64] [--steps 30] [--warmup 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from openhmr.body.anny import Anny
from openhmr.train import Trainer
from openhmr.training.config import TrainConfig
from train_throughput import fixed_inputs, images_per_second


def body_ms(body: Anny, batch: int, mesh: bool, repeats: int) -> float:
    """Median milliseconds of the body model's forward + backward at ``batch``."""
    g = torch.Generator().manual_seed(0)
    device = body.faces.device
    pose = body.random_pose(batch, g).to(device).requires_grad_(True)
    shape = body.random_shape(batch, g).to(device).requires_grad_(True)
    run = body if mesh else body.forward_keypoints
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for i in range(repeats + 2):
        sync()
        t0 = time.perf_counter()
        out = run(pose, shape)
        (sum(k.sum() for k in out.keypoints.values()) + out.joints.sum()).backward()
        sync()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="default: 64 on CUDA, 16 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="default: 30 on CUDA, 6 on CPU")
    parser.add_argument("--warmup", type=int, default=None, help="default: 5 on CUDA, 2 on CPU")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    batch = args.batch or (64 if cuda else 16)
    steps = args.steps or (30 if cuda else 6)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 2)
    body = Anny()
    cfg = TrainConfig(
        data="synthetic", synthetic_samples=2, body_model="anny", encoder="resnet50_v2",
        batch_size=batch, device=device, bf16=cuda, channels_last=cuda, tensorboard=False,
        num_workers=0, max_steps=10**9, checkpoint_every=10**9, log_every=10**9, image_log_every=10**9,
    )
    print(f"{device}, batch {batch}, ResNet-50 v2 {'bf16 + channels_last' if cuda else 'fp32'}, "
          f"{torch.get_num_threads()} threads")
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, run_dir, body_model=body)
        torch.backends.cudnn.benchmark = cuda
        inputs = fixed_inputs(trainer, batch)
        for label, mesh in (("mesh posed (baseline)", True), ("keypoints only", False)):
            if mesh:
                setattr(body, "forward_keypoints", body.forward)  # what the step ran before
            try:
                part = body_ms(body, batch, mesh, repeats=10)
                rate = images_per_second(trainer, inputs, steps, warmup)
            finally:
                if mesh:
                    del body.forward_keypoints
            results[label] = (part, rate)
            print(f"{label:22s}  body model fwd+bwd {part:8.1f} ms   step {batch / rate * 1e3:8.0f} ms"
                  f"   {rate:8.1f} images/s", flush=True)
    (base_part, base_rate), (kp_part, kp_rate) = results.values()
    print(f"keypoints only vs mesh posed: body model {base_part / kp_part:.1f}× faster, "
          f"whole step {kp_rate / base_rate:.2f}×")


if __name__ == "__main__":
    main()
