"""Choosing and building an inference backend: ``load_predictor``.

Backends (all return the same Θ, within the stated accuracy):

==================  =========================================================
``torch``           eager PyTorch, fp32 — the reference.
``compiled``        ``torch.compile`` (inductor, frozen weights, channels_last),
                    fp32; compiles once per batch size (a smaller batch is padded).
``onnx``            ONNX Runtime, fp32 (the graph exported once, cached).
``bf16``            eager PyTorch under bf16 autocast, channels_last.
``compiled-bf16``   ``torch.compile`` of the bf16-autocast graph.
``auto``            the first of :data:`AUTO_PREFERENCE` that is installed
                    and, for reduced precision, agrees with eager fp32 on
                    probe crops for *these* weights (vertices ≤ 5 mm, 2D
                    keypoints ≤ 1 px on the 224 crop); eager fp32 if none.
                    For a job of fewer than :data:`COMPILE_MIN_CROPS` crops
                    the compiled backends are left out: their compilation
                    would take longer than it saves; on the CPU, below
                    :data:`FASTER_MIN_CROPS` crops eager fp32 is used, as
                    any other backend's checks cost more than it saves.
==================  =========================================================

Reduced precision is never trusted blindly: its error depends on the
weights' and activations' statistics, so ``auto`` measures it on the model
being loaded (a few probe crops, fp32 vs the candidate) and skips a candidate
that is outside the tolerance. Asking for a reduced-precision backend by name
runs the same check and warns when it fails.

int8 is not a backend. ONNX Runtime's static int8 quantisation
(``openhmr export-onnx --int8``, VNNI) is about as fast as compiled bf16 here,
but it was outside the tolerance on every model measured, the small test
network included (11 mm there; 82–171 mm on the full-size random proxies,
against 2.5 mm and 12–50 mm for compiled bf16): a quantised graph can be
exported and run as a file, with its error printed at export, but nothing
picks it for the user.
"""

from __future__ import annotations

import copy
import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from openhmr.body.base import BodyModel
from openhmr.devices import require_device
from openhmr.errors import InputError, OpenHMRError
from openhmr.inference.predictor import (
    KEYPOINT_TOLERANCE_PX,
    VERTEX_TOLERANCE_MM,
    Agreement,
    CompiledPredictor,
    Predictor,
    ThetaNetwork,
    TorchPredictor,
    compare_thetas,
)

if TYPE_CHECKING:
    from openhmr.nets.hmr import HMR

BACKENDS = ("auto", "torch", "compiled", "onnx", "bf16", "compiled-bf16")
REDUCED_PRECISION = ("bf16", "compiled-bf16")
# Fastest first, from benchmarks/vs_original.py on a 2-core AVX-512 (BF16,
# VNNI) CPU (whole crop → Θ → vertices path, batch 1 / per image at batch 16):
# compiled bf16 ~25 / ~18 ms, eager bf16 ~40 / ~24 ms, ONNX Runtime and
# compiled fp32 ~43 / ~39 ms, eager fp32 ~60 / ~66 ms. Reduced precision is
# used only when it passes the accuracy check for the weights being loaded.
# Among the fp32 graphs ONNX Runtime comes first: as fast, and its one-off
# cost (export, ~10 s, cached on disk across runs) is far below
# torch.compile's (~15–30 s in every process and for every new batch size).
AUTO_PREFERENCE = ("compiled-bf16", "bf16", "onnx", "compiled", "torch")
AUTO_PREFERENCE_CUDA = ("compiled-bf16", "bf16", "compiled", "torch")
COMPILED = ("compiled", "compiled-bf16")
# When compiling pays off. Measured here (benchmarks/vs_original.py and a
# per-process start-up timing): compiled bf16 spends ~17 s compiling for its
# first batch size and ~16 s for each further one (a demo uses two: 1, then
# --batch-size), to run ~18.6 ms per crop against eager bf16's ~25.4 ms at
# batch 8. Break-even is (33 s − 0.6 s of eager bf16's check) / 6.8 ms ≈ 4,800
# crops; compiled fp32 never beats ONNX Runtime here. On a GPU the compile
# takes as long and saves less per crop, so the same bound is, if anything,
# generous there.
COMPILE_MIN_CROPS = 5000
# When any backend other than eager fp32 pays off on the CPU. Choosing one
# costs ~1.2 s (bf16's accuracy check: 4 + 4 probe forwards; building the ONNX
# session, hashing the weights) and saves ~31 ms per crop (ONNX Runtime
# against eager fp32, 265 → 234 ms a photo through the demo): ~40 crops to
# break even. Measured with random weights on this 2-core CPU, 2026-12-07.
FASTER_MIN_CROPS = 40
PROBE_CROPS = 4


class BackendError(OpenHMRError):
    """A backend was asked for that cannot run here."""


def _log(message: str) -> None:
    print(f"openhmr: {message}", file=sys.stderr)


def _load_model(weights: str | Path | HMR, body_model: BodyModel | None) -> HMR:
    from openhmr.nets import HMR

    if isinstance(weights, torch.nn.Module):
        # A copy: the predictor needs float32 in eval mode and moves it to its
        # device, and the caller's model keeps its own dtype, device and mode.
        return copy.deepcopy(weights).float().cpu().eval()
    from openhmr.io.hmr_weights import require_weights_file

    path = require_weights_file(weights)
    # The caller's body model likewise stays theirs: a float32 copy is posed.
    body = None if body_model is None else copy.deepcopy(body_model)
    return HMR.from_pretrained(path, body_model=body).float().eval()


def _weights_key(model: HMR) -> str:
    """A digest of what makes the network's ONNX graph (its weights, its IEF
    iteration count, the encoder, the opset, torch's and openhmr's versions),
    naming its cached graphs."""
    from openhmr import __version__
    from openhmr.inference.onnx import OPSET

    digest = hashlib.sha256()
    for name, tensor in sorted(model.network_state().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    made_by = (model.regressor.num_iterations, model.encoder_name, OPSET, torch.__version__, __version__)
    digest.update(repr(made_by).encode())
    return digest.hexdigest()[:20]


def _onnx_file(model: HMR, cache: Path | None) -> Path:
    """The fp32 graph of ``model`` in the cache, exported on first use."""
    from openhmr.inference.onnx import export_onnx
    from openhmr.io.cache import cache_dir

    folder = (cache or cache_dir()) / "onnx"
    path = folder / f"hmr-{_weights_key(model)}-fp32.onnx"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            _log(f"exporting the network to ONNX (once; cached in {folder})")
            tmp = path.with_suffix(f".{os.getpid()}.part")  # concurrent runs do not collide
            export_onnx(model, tmp, batch=None, overwrite=True)
            tmp.replace(path)
    except OSError as e:  # a cache folder that cannot be written: 'auto' goes on to the next backend
        raise BackendError(f"cannot keep the ONNX graph in {folder} ({e.strerror or e}; "
                           "set OPENHMR_CACHE to a writable folder)") from None
    return path


def build_backend(name: str, model: HMR, device: str | torch.device = "cpu",
                  cache: Path | None = None) -> Predictor:
    """One backend for an ``openhmr.nets.HMR`` (no accuracy check; see :func:`load_predictor`).

    Raises:
        BackendError: unknown name, or a backend this device or install cannot run.
    """
    device = torch.device(device)
    network = ThetaNetwork(model.encoder, model.regressor)
    body = model.body
    if name == "torch":
        return TorchPredictor(network, body, device)
    if name == "bf16":
        return TorchPredictor(network, body, device, bf16=True)
    if name in ("compiled", "compiled-bf16"):
        return CompiledPredictor(network, body, device, bf16=name == "compiled-bf16")
    if name == "onnx":
        from openhmr.inference.onnx import OnnxPredictor, onnx_available

        if device.type != "cpu":
            raise BackendError(f"backend {name!r} runs on the CPU only (onnxruntime CPU provider)")
        missing = onnx_available()
        if missing:
            raise BackendError(f"backend {name!r} needs ONNX: {missing}")
        return OnnxPredictor(_onnx_file(model, cache), body)
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def check_agreement(reference: Predictor, candidate: Predictor, crops: Tensor) -> Agreement:
    """Vertex / 2D keypoint distance of ``candidate`` from ``reference`` on ``crops``.

    The crops go one at a time (batch 1, the size every caller uses first),
    so that a compiled candidate compiles only once for the check.
    """
    ref = torch.cat([reference.theta(c[None]) for c in crops])
    other = torch.cat([candidate.theta(c[None]) for c in crops])
    return compare_thetas(reference.body, ref, other)


def load_predictor(
    weights: str | Path | HMR,
    body_model: BodyModel | None = None,
    backend: str = "auto",
    device: str | torch.device = "cpu",
    *,
    probe_crops: Tensor | None = None,
    tolerance: tuple[float, float] = (VERTEX_TOLERANCE_MM, KEYPOINT_TOLERANCE_PX),
    cache: Path | None = None,
    preference: tuple[str, ...] | None = None,
    expected_crops: int | None = None,
    log: Callable[[str], None] = _log,
) -> Predictor:
    """HMR weights → a predictor ``crops (B, 3, 224, 224) in [-1, 1] → (cam, pose, betas)``.

    Args:
        weights: ``.safetensors`` HMR weights, an exported ``.onnx`` file
            (``openhmr export-onnx``; ONNX Runtime, the file's precision), or
            an ``openhmr.nets.HMR`` module.
        body_model: the body model the weights were made for (needed for a
            file; an HMR module brings its own).
        backend: one of :data:`BACKENDS`.
        device: "cpu" or "cuda"; ONNX backends are CPU only.
        probe_crops: (N, 3, 224, 224) crops for the reduced-precision check;
            default 4 synthetic crops (``openhmr.inference.calibrated``).
        tolerance: (vertex mm, keypoint px) a reduced-precision backend must
            meet against eager fp32.
        cache: folder for exported graphs (default ``$OPENHMR_CACHE`` or
            ``~/.cache/openhmr``).
        preference: override :data:`AUTO_PREFERENCE` for ``auto``.
        expected_crops: how many crops the caller will run at most, if
            known (a frame may hold nobody, a photo fewer people). Below
            :data:`COMPILE_MIN_CROPS`, ``auto`` skips the compiled backends,
            and on the CPU below :data:`FASTER_MIN_CROPS` it takes eager fp32
            (None: a long-running job; nothing is skipped).
        log: where one-line notes go (stderr by default).
    Returns:
        the predictor; ``predictor.name`` says which backend runs and, for a
        reduced-precision one, ``predictor.agreement`` the measured accuracy.
    Raises:
        BackendError / WeightsError / InputError on unusable requests or files.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    device = require_device(device)

    if not isinstance(weights, torch.nn.Module) and Path(weights).suffix.lower() == ".onnx":
        return _onnx_file_predictor(Path(weights), body_model, backend, device, log)

    model = _load_model(weights, body_model)
    if backend != "auto":
        predictor = build_backend(backend, model, device, cache)
        if backend in REDUCED_PRECISION:
            predictor.agreement = result = _verify(model, predictor, device, probe_crops)
            if not result.within(*tolerance):
                log(f"warning: backend {backend} is outside the accuracy tolerance for these weights "
                    f"({result}); 'auto' would not use it")
        return predictor

    order = preference or (AUTO_PREFERENCE_CUDA if device.type == "cuda" else AUTO_PREFERENCE)
    if (preference is None and device.type == "cpu" and expected_crops is not None
            and expected_crops < FASTER_MIN_CROPS):
        log(f"up to {expected_crops} crop(s) to run: eager fp32 (another backend's checks and set-up "
            f"pay off from about {FASTER_MIN_CROPS} crops on the CPU; name one to use it anyway)")
        return TorchPredictor(ThetaNetwork(model.encoder, model.regressor), model.body, device)
    if expected_crops is not None and expected_crops < COMPILE_MIN_CROPS and any(n in COMPILED for n in order):
        order = tuple(n for n in order if n not in COMPILED)
        log(f"up to {expected_crops} crop(s) to run: compiled backends skipped (compiling pays off "
            f"from about {COMPILE_MIN_CROPS} crops; name one as the backend to compile anyway)")
    reference = TorchPredictor(ThetaNetwork(model.encoder, model.regressor), model.body, device)
    for name in order:
        if name == "torch":
            return reference
        try:
            candidate = build_backend(name, model, device, cache)
        except (BackendError, OpenHMRError, ImportError, RuntimeError) as e:
            log(f"backend {name} unavailable ({e}); trying the next")
            continue
        if name == "compiled-bf16":
            # Screen with eager bf16 (same rounding of weights and activations,
            # no BN folding) before paying for a compilation it would not pass.
            screen = _verify(model, build_backend("bf16", model, device), device, probe_crops, reference)
            if not screen.within(*tolerance):
                log(f"backend {name} skipped: bf16 gives {screen} against fp32, above the "
                    f"{tolerance[0]:g} mm / {tolerance[1]:g} px tolerance for these weights")
                continue
        if name in REDUCED_PRECISION:
            result = _verify(model, candidate, device, probe_crops, reference)
            candidate.agreement = result
            if not result.within(*tolerance):
                log(f"backend {name} skipped: {result} against fp32, above the "
                    f"{tolerance[0]:g} mm / {tolerance[1]:g} px tolerance for these weights")
                continue
        if isinstance(candidate, CompiledPredictor):
            # Compile now at the probe size so that a failing compiler shows here.
            candidate.compile_for(1)
            if candidate.failed:
                continue
        return candidate
    return reference


def _verify(model: HMR, candidate: Predictor, device: torch.device,
            probe_crops: Tensor | None, reference: Predictor | None = None) -> Agreement:
    from openhmr.inference.calibrated import synthetic_crops

    crops = probe_crops if probe_crops is not None else synthetic_crops(PROBE_CROPS, seed=4321)
    crops = crops.to(device)
    if reference is None:
        reference = TorchPredictor(ThetaNetwork(model.encoder, model.regressor), model.body, device)
    return check_agreement(reference, candidate, crops)


def _onnx_file_predictor(path: Path, body_model: BodyModel | None, backend: str,
                         device: torch.device, log: Callable[[str], None] = _log) -> Predictor:
    from openhmr.inference.onnx import OnnxPredictor, onnx_available, read_metadata

    missing = onnx_available()
    if missing:
        raise BackendError(f"{path.name} is an ONNX graph, which needs {missing}")
    if device.type != "cpu":
        raise BackendError("ONNX graphs run on the CPU only (onnxruntime CPU provider)")
    if backend not in ("auto", "onnx"):
        raise BackendError(f"{path.name} is an ONNX graph: use backend onnx or auto, not {backend!r}")
    if body_model is None:
        raise InputError(f"{path.name}: pass the body model it was exported for (body_model=SMPL(...))")
    if read_metadata(path).get("precision") == "int8":
        log(f"{path.name} is an int8 graph, run as it is: its error against fp32 was printed "
             "when it was exported, and it is not checked here")
    return OnnxPredictor(path, body_model)


def available_backends(device: str | torch.device = "cpu") -> dict[str, str | None]:
    """Each backend name → None if it can run here, else the reason it cannot."""
    from openhmr.inference.onnx import onnx_available

    try:
        device = require_device(device)
    except InputError as e:  # no such device here: nothing runs on it
        return {name: str(e) for name in BACKENDS}
    reasons: dict[str, str | None] = {name: None for name in BACKENDS}
    missing = onnx_available()
    if device.type != "cpu":
        reasons["onnx"] = "ONNX Runtime here runs on the CPU only"
    elif missing:
        reasons["onnx"] = missing
    if device.type == "cpu" and not torch.backends.mkldnn.is_available():
        for name in ("bf16", "compiled-bf16"):
            reasons[name] = "this torch has no oneDNN (mkldnn) for bf16"
    return reasons


__all__ = [
    "AUTO_PREFERENCE", "BACKENDS", "BackendError", "REDUCED_PRECISION", "available_backends",
    "build_backend", "check_agreement", "load_predictor",
]
