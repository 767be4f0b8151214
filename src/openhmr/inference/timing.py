"""Timing inference backends side by side (what ``openhmr bench`` measures).

Every backend runs the whole inference path of the demo, crops → Θ → body
vertices and keypoints (``Predictor.predict``), on the same crops, and is
compared with eager fp32 PyTorch measured in the same run:

* time: the backends take turns in blocks of a few calls (each block starts
  with one untimed call), so that load from other processes hits them alike
  and one backend's spinning threads (OpenMP, ONNX Runtime) do not slow the
  next one's first call; the median over the timed calls is reported;
* one-off cost: building the backend (an ONNX export, cached on disk) plus
  its first call at each batch size (compilation for ``torch.compile``);
* agreement: Θ of each backend against eager fp32 on all the crops, as
  vertex mm / 2D keypoint px (``openhmr.inference.compare_thetas``).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from openhmr.errors import OpenHMRError
from openhmr.inference.predictor import Agreement, Predictor, compare_thetas

if TYPE_CHECKING:
    from openhmr.nets.hmr import HMR

#: (wall ms, process-CPU ms) of each timed call of a block.
Samples = list[tuple[float, float]]


def block_timer(fn: Callable[[], object], device: torch.device | None = None) -> Callable[[int], Samples]:
    """A block of calls of ``fn``: one untimed, then ``n`` timed.

    On a CUDA device each call waits for the GPU to finish, so a call's time
    is its work and not only its launch.
    """
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)

    def block(n: int) -> Samples:
        fn()
        sync()
        out = []
        for _ in range(n):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            sync()
            out.append(((time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000))
        return out

    return block


def time_interleaved(blocks: dict[str, Callable[[int], Samples]], repeats: int,
                     block: int = 5) -> dict[str, dict[str, float]]:
    """Median and best wall ms, and median process-CPU ms, of each variant over
    at least ``repeats`` timed calls, the variants taking turns in blocks of
    ``block`` calls."""
    samples: dict[str, Samples] = {k: [] for k in blocks}
    while min(len(v) for v in samples.values()) < repeats:
        for name, run_block in blocks.items():
            samples[name] += run_block(block)
    return {k: {"median_ms": statistics.median(w for w, _ in v), "min_ms": min(w for w, _ in v),
                "cpu_ms": statistics.median(c for _, c in v), "calls": len(v)}
            for k, v in samples.items()}


@dataclass
class BackendTiming:
    """One backend's figures.

    Attributes:
        name: the backend.
        median_ms / best_ms: batch size → median / fastest wall ms of one call
            (crops → vertices); per crop is that over the batch size.
        cpu_ms: batch size → median process-CPU ms of one call.
        one_off_s: building the backend plus its first call at every batch size, s.
        agreement: its Θ against eager fp32 on the crops (None for eager fp32).
    """

    name: str
    median_ms: dict[int, float] = field(default_factory=dict)
    best_ms: dict[int, float] = field(default_factory=dict)
    cpu_ms: dict[int, float] = field(default_factory=dict)
    one_off_s: float = 0.0
    agreement: Agreement | None = None

    def as_dict(self) -> dict:
        a = self.agreement
        return {
            "backend": self.name,
            "median_ms": {str(b): v for b, v in self.median_ms.items()},
            "best_ms": {str(b): v for b, v in self.best_ms.items()},
            "cpu_ms": {str(b): v for b, v in self.cpu_ms.items()},
            "one_off_s": self.one_off_s,
            "agreement": None if a is None else {"vertex_mm": a.vertex_mm, "keypoint_px": a.keypoint_px,
                                                 "theta": a.theta, "within": a.within()},
        }


def bench_backends(model: HMR, names: list[str], batches: list[int], crops: Tensor,
                   repeats: int, device: torch.device,
                   log: Callable[[str], None] = lambda m: None) -> tuple[list[BackendTiming], dict[str, str]]:
    """Time ``names`` (eager fp32 ``torch`` always included, first) on ``crops``.

    Args:
        model: an ``openhmr.nets.HMR`` in eval mode.
        names: backends of :data:`openhmr.inference.BACKENDS` other than ``auto``.
        batches: batch sizes; ``crops`` holds at least the largest.
        crops: (N, 3, 224, 224) in [-1, 1].
        repeats: timed calls per backend and batch size (at least).
        device: where the backends run.
        log: progress lines.
    Returns:
        the timings, eager fp32 first, and the backends that could not be
        built here → why.
    """
    from openhmr.inference.backends import build_backend

    order = ["torch"] + [n for n in dict.fromkeys(names) if n != "torch"]
    predictors: dict[str, Predictor] = {}
    timings: dict[str, BackendTiming] = {}
    unavailable: dict[str, str] = {}
    for name in order:
        log(f"building {name}")
        t0 = time.perf_counter()
        try:
            predictors[name] = build_backend(name, model, device)
        except (OpenHMRError, ImportError, RuntimeError, OSError) as e:
            unavailable[name] = str(e).splitlines()[0] if str(e) else type(e).__name__
            continue
        timings[name] = BackendTiming(name, one_off_s=time.perf_counter() - t0)

    def drop_fallen_back() -> None:
        # A compiled predictor whose compilation failed runs eagerly from then
        # on: its times would be eager fp32's under another name.
        for name in [n for n, p in predictors.items() if getattr(p, "failed", None)]:
            unavailable[name] = f"fell back to eager: {getattr(predictors.pop(name), 'failed')}"
            del timings[name]

    # Smallest first: a compiled backend pads a batch up to a larger size it
    # already compiled for, which would time batch 1 as batch 8.
    for batch in sorted(set(batches)):
        x = crops[:batch].to(device)
        for name, p in predictors.items():
            log(f"first call of {name} at batch {batch}" + (" (compiling)" if name.startswith("compiled") else ""))
            t0 = time.perf_counter()
            p.predict(x)
            timings[name].one_off_s += time.perf_counter() - t0
        drop_fallen_back()
        log(f"timing batch {batch}: {len(predictors)} backend(s), {repeats} calls each")
        blocks = {n: block_timer(functools.partial(p.predict, x), device) for n, p in predictors.items()}
        for name, t in time_interleaved(blocks, repeats).items():
            timings[name].median_ms[batch] = t["median_ms"]
            timings[name].best_ms[batch] = t["min_ms"]
            timings[name].cpu_ms[batch] = t["cpu_ms"]
        drop_fallen_back()

    log("comparing each backend with eager fp32")
    reference = predictors["torch"]
    ref_theta = torch.cat([reference.theta(c) for c in crops.split(max(batches))])
    for name, p in predictors.items():
        if name != "torch":
            theta = torch.cat([p.theta(c) for c in crops.split(max(batches))])
            timings[name].agreement = compare_thetas(reference.body, ref_theta, theta)
    drop_fallen_back()
    return list(timings.values()), unavailable
