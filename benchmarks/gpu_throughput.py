"""GPU throughput of HMR inference: images per second for crop → Θ → SMPL vertices.

On a CUDA device, at a large batch (default 256), each variant runs the
whole path: ResNet-50 encoder + 3 IEF iterations + SMPL:

* ``fp32``         eager, NCHW (the baseline);
* ``bf16``         eager under bf16 autocast, channels_last (tensor cores);
* ``compiled-bf16`` ``torch.compile`` of the network in bf16 autocast,
  channels_last, frozen weights; on CUDA in ``--compile-mode reduce-overhead``
  (the default: inductor's kernels, replayed as CUDA graphs) or
  ``max-autotune`` (also tunes every convolution and matrix product: on an
  H200 that did not finish within 5 minutes);
* ``cudagraph-bf16`` the eager bf16 network captured by hand with
  ``torch.cuda.graphs`` (static input/output buffers, one replay per batch).

SMPL always runs in fp32 (it is a small part of the time and keeps vertices
exact); its time is included. Timing uses CUDA events after warm-up; the
figure is images/s = batch / median batch time. Weights are random with
calibrated BN statistics (speed does not depend on their values); the
accuracy of each variant against fp32 is printed as well.

    python benchmarks/gpu_throughput.py [--batch 256] [--iters 30]
    python benchmarks/gpu_throughput.py --device cpu --batch 2 --iters 2   # dry run

Measured on an H200 (README, Speed); ``benchmarks/gpu_checks.sh`` runs it with
the other GPU checks. Without a GPU it stops with a message unless ``--device cpu``.
``--device cpu`` is a dry run that checks the script executes (tiny batch, no
CUDA graphs, ``torch.compile`` in its default mode); its numbers say nothing
about a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import Tensor, nn

DEFAULT_VARIANTS = ("fp32", "bf16", "compiled-bf16", "cudagraph-bf16")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--iters", type=int, default=30, help="timed batches per variant")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=DEFAULT_VARIANTS)
    p.add_argument("--compile-mode", default="reduce-overhead",
                   choices=("default", "reduce-overhead", "max-autotune"),
                   help="torch.compile mode of compiled-bf16 on CUDA (reduce-overhead: inductor's "
                        "kernels replayed as CUDA graphs; max-autotune also tunes each "
                        "convolution, which takes many minutes)")
    return p.parse_args(argv)


class CudaGraphNetwork:
    """A network captured once with ``torch.cuda.graphs`` for a fixed input shape.

    Each call copies the crops into the static input buffer and replays the
    graph: one launch for the ~200 kernels of the forward pass.
    """

    def __init__(self, network: nn.Module, example: Tensor, bf16: bool = True) -> None:
        self.network = network
        self.bf16 = bf16
        self.static_input = example.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # warm-up on a side stream, as capture requires
                self._forward(self.static_input)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.static_output = self._forward(self.static_input)

    def _forward(self, crops: Tensor) -> Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            return self.network(crops).float()

    def __call__(self, crops: Tensor) -> Tensor:
        self.static_input.copy_(crops)
        self.graph.replay()
        return self.static_output


def build_variant(name: str, network: nn.Module, example: Tensor, device: torch.device,
                  compile_mode: str = "reduce-overhead"):
    """crops → Θ callable for one variant (its own copy of the network)."""
    import copy

    net = copy.deepcopy(network).to(device).eval()
    if name == "fp32":
        def run(x: Tensor) -> Tensor:
            with torch.inference_mode():
                return net(x)
        return run
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # documented; not in the stubs
    if name == "bf16":
        def run(x: Tensor) -> Tensor:
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
                return net(x.contiguous(memory_format=torch.channels_last)).float()
        return run
    if name == "compiled-bf16":
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        mode = compile_mode if device.type == "cuda" and compile_mode != "default" else None
        compiled = torch.compile(net, mode=mode, dynamic=False)

        def run(x: Tensor) -> Tensor:
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
                return compiled(x.contiguous(memory_format=torch.channels_last)).float()
        return run
    if name == "cudagraph-bf16":
        if device.type != "cuda":
            return None  # CUDA graphs need a GPU; skipped in the dry run
        graph = CudaGraphNetwork(net, example.contiguous(memory_format=torch.channels_last))
        return lambda x: graph(x.contiguous(memory_format=torch.channels_last))
    raise ValueError(name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_throughput: no CUDA device in this torch install "
              f"(torch {torch.__version__}, CUDA {torch.version.cuda}); this benchmark needs a GPU. "
              "Use --device cpu --batch 2 --iters 2 for a dry run.", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    from openhmr.body import SMPL
    from openhmr.body.synthetic import synthetic_smpl_arrays
    from openhmr.inference import ThetaNetwork, compare_thetas
    from openhmr.inference.calibrated import calibrated_random_hmr, synthetic_crops

    body = SMPL(synthetic_smpl_arrays())
    model = calibrated_random_hmr(body, images=synthetic_crops(8, seed=0))
    network = ThetaNetwork(model.encoder, model.regressor)
    crops = synthetic_crops(min(args.batch, 16), seed=1)
    crops = crops.repeat(-(-args.batch // len(crops)), 1, 1, 1)[: args.batch].to(device)
    body = body.to(device)
    pose_end = 3 + body.pose_size

    def full(theta_fn):
        def run() -> Tensor:
            theta = theta_fn(crops)
            with torch.inference_mode():
                return body(theta[:, 3:pose_end].float(), theta[:, pose_end:].float()).vertices
        return run

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    reference = network.to(device).eval()
    with torch.inference_mode():
        reference_theta = reference(crops).float()
    print(f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu (dry run)'}, "
          f"batch {args.batch}, torch {torch.__version__}")
    print(f"{'variant':>15} {'ms/batch':>9} {'images/s':>9} {'× first':>8} {'set-up s':>9} {'vertices Δ mm':>14}")
    baseline: float | None = None  # the first variant measured (fp32 by default): the ratios' base
    baseline_name = ""
    for name in args.variants:
        t0 = time.perf_counter()
        theta_fn = build_variant(name, network, crops, device, args.compile_mode)
        if theta_fn is None:
            print(f"{name:>15}  skipped (needs CUDA)")
            continue
        run = full(theta_fn)
        for _ in range(args.warmup):
            run()
        sync()
        setup = time.perf_counter() - t0
        times = []
        for _ in range(args.iters):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                run()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t = time.perf_counter()
                run()
                times.append((time.perf_counter() - t) * 1000)
        theta = theta_fn(crops).float()
        error = compare_thetas(body, reference_theta, theta).vertex_mm
        median = statistics.median(times)
        if baseline is None:
            baseline, baseline_name = median, name
        print(f"{name:>15} {median:9.2f} {args.batch / median * 1000:9.0f} {baseline / median:8.2f} "
              f"{setup:9.1f} {error:14.3f}")
    if baseline_name:
        print(f"× first: speed against {baseline_name}, measured in this run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
