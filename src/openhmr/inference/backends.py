"""Choosing and building an inference backend: ``load_predictor``.

Backends (all return the same Θ, within the stated accuracy):

==================  =========================================================
``torch``           eager PyTorch, fp32 — the reference.
``compiled``        ``torch.compile`` (inductor, frozen weights, channels_last),
                    fp32; compiles once per batch size.
``onnx``            ONNX Runtime, fp32 (the graph exported once, cached).
``bf16``            eager PyTorch under bf16 autocast, channels_last.
``compiled-bf16``   ``torch.compile`` of the bf16-autocast graph.
``onnx-int8``       ONNX Runtime, convolutions in int8 (static QDQ
                    quantisation calibrated on sample crops).
``auto``            the first of :data:`AUTO_PREFERENCE` that is installed
                    and, for reduced precision, agrees with eager fp32 on
                    probe crops for *these* weights (vertices ≤ 5 mm, 2D
                    keypoints ≤ 1 px on the 224 crop); eager fp32 if none.
==================  =========================================================

Reduced precision is never trusted blindly: its error depends on the
weights' and activations' statistics, so ``auto`` measures it on the model
being loaded (a few probe crops, fp32 vs the candidate) and skips a candidate
that is outside the tolerance. Asking for a reduced-precision backend by name
runs the same check and warns when it fails.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from openhmr.body.base import BodyModel
from openhmr.errors import InputError, OpenHMRError, WeightsError
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

BACKENDS = ("auto", "torch", "compiled", "onnx", "bf16", "compiled-bf16", "onnx-int8")
REDUCED_PRECISION = ("bf16", "compiled-bf16", "onnx-int8")
# Fastest first, from benchmarks/vs_original.py on a 2-core AVX-512 (BF16,
# VNNI) CPU: ONNX Runtime int8 runs the network in ~17 ms at batch 1 and
# ~18 ms per image at batch 16, compiled bf16 in ~22 / ~20 ms, ONNX Runtime
# and compiled fp32 in ~36–50 / ~40–45 ms, eager fp32 in ~70 / ~75 ms.
# Reduced precision is used only when it passes the accuracy check for the
# weights being loaded. Among the fp32 graphs ONNX Runtime comes first: about
# as fast, and its one-off cost (export, ~10 s, cached on disk across runs)
# is far below torch.compile's (~15–30 s in every process and for every new
# batch size).
AUTO_PREFERENCE = ("onnx-int8", "compiled-bf16", "bf16", "onnx", "compiled", "torch")
AUTO_PREFERENCE_CUDA = ("compiled-bf16", "bf16", "compiled", "torch")
PROBE_CROPS = 4
CALIBRATION_CROPS = 16


class BackendError(OpenHMRError):
    """A backend was asked for that cannot run here."""


def _log(message: str) -> None:
    print(f"openhmr: {message}", file=sys.stderr)


def _load_model(weights: str | Path | torch.nn.Module, body_model: BodyModel | None) -> torch.nn.Module:
    from openhmr.nets import HMR

    if isinstance(weights, torch.nn.Module):
        return weights.float().cpu().eval()
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    return HMR.from_pretrained(path, body_model=body_model).eval()


def _weights_key(model: torch.nn.Module) -> str:
    """A digest of the network's weights, naming its cached ONNX graphs."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.network_state().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    digest.update(torch.__version__.encode())
    return digest.hexdigest()[:20]


def _onnx_files(model: torch.nn.Module, cache: Path | None) -> tuple[Path, Path]:
    """fp32 and int8 graph paths for ``model`` in the cache, exported on first use."""
    from openhmr.inference.onnx import cache_dir, export_onnx

    folder = (cache or cache_dir()) / "onnx"
    folder.mkdir(parents=True, exist_ok=True)
    key = _weights_key(model)
    fp32 = folder / f"hmr-{key}-fp32.onnx"
    int8 = folder / f"hmr-{key}-int8.onnx"
    if not fp32.is_file():
        _log(f"exporting the network to ONNX (once; cached in {folder})")
        tmp = fp32.with_suffix(f".{os.getpid()}.part")  # concurrent runs do not collide
        export_onnx(model, tmp, batch=None, overwrite=True)
        tmp.replace(fp32)
    return fp32, int8


def _ensure_int8(fp32: Path, int8: Path, calibration: Tensor | None) -> Path:
    from openhmr.inference.calibrated import synthetic_crops
    from openhmr.inference.onnx import quantize_int8

    if not int8.is_file():
        crops = calibration if calibration is not None else synthetic_crops(CALIBRATION_CROPS, seed=1234)
        _log(f"quantising the network to int8 on {len(crops)} calibration crops (once; cached)")
        tmp = int8.with_suffix(f".{os.getpid()}.part")
        quantize_int8(fp32, tmp, crops, overwrite=True)
        tmp.replace(int8)
    return int8


def build_backend(name: str, model: torch.nn.Module, device: str | torch.device = "cpu",
                  cache: Path | None = None, calibration: Tensor | None = None) -> Predictor:
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
    if name in ("onnx", "onnx-int8"):
        from openhmr.inference.onnx import OnnxPredictor, onnx_available

        if device.type != "cpu":
            raise BackendError(f"backend {name!r} runs on the CPU only (onnxruntime CPU provider)")
        missing = onnx_available()
        if missing:
            raise BackendError(f"backend {name!r} needs ONNX: {missing}")
        fp32, int8 = _onnx_files(model, cache)
        path = _ensure_int8(fp32, int8, calibration) if name == "onnx-int8" else fp32
        return OnnxPredictor(path, body)
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
    weights: str | Path | torch.nn.Module,
    body_model: BodyModel | None = None,
    backend: str = "auto",
    device: str | torch.device = "cpu",
    *,
    probe_crops: Tensor | None = None,
    calibration_crops: Tensor | None = None,
    tolerance: tuple[float, float] = (VERTEX_TOLERANCE_MM, KEYPOINT_TOLERANCE_PX),
    cache: Path | None = None,
    preference: tuple[str, ...] | None = None,
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
        calibration_crops: crops that set int8 activation ranges (default 16
            synthetic crops). Crops like the real inputs calibrate best.
        tolerance: (vertex mm, keypoint px) a reduced-precision backend must
            meet against eager fp32.
        cache: folder for exported graphs (default ``$OPENHMR_CACHE`` or
            ``~/.cache/openhmr``).
        preference: override :data:`AUTO_PREFERENCE` for ``auto``.
        log: where one-line notes go (stderr by default).
    Returns:
        the predictor; ``predictor.name`` says which backend runs and, for a
        reduced-precision one, ``predictor.agreement`` the measured accuracy.
    Raises:
        BackendError / WeightsError / InputError on unusable requests or files.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda was asked for but this torch has no CUDA device")

    if not isinstance(weights, torch.nn.Module) and Path(weights).suffix.lower() == ".onnx":
        return _onnx_file_predictor(Path(weights), body_model, backend, device)

    model = _load_model(weights, body_model)
    if backend != "auto":
        predictor = build_backend(backend, model, device, cache, calibration_crops)
        if backend in REDUCED_PRECISION:
            predictor.agreement = result = _verify(model, predictor, device, probe_crops)
            if not result.within(*tolerance):
                log(f"warning: backend {backend} is outside the accuracy tolerance for these weights "
                    f"({result}); 'auto' would not use it")
        return predictor

    order = preference or (AUTO_PREFERENCE_CUDA if device.type == "cuda" else AUTO_PREFERENCE)
    reference = TorchPredictor(ThetaNetwork(model.encoder, model.regressor), model.body, device)
    for name in order:
        if name == "torch":
            return reference
        try:
            candidate = build_backend(name, model, device, cache, calibration_crops)
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


def _verify(model: torch.nn.Module, candidate: Predictor, device: torch.device,
            probe_crops: Tensor | None, reference: Predictor | None = None) -> Agreement:
    from openhmr.inference.calibrated import synthetic_crops

    crops = probe_crops if probe_crops is not None else synthetic_crops(PROBE_CROPS, seed=4321)
    crops = crops.to(device)
    if reference is None:
        reference = TorchPredictor(ThetaNetwork(model.encoder, model.regressor), model.body, device)
    return check_agreement(reference, candidate, crops)


def _onnx_file_predictor(path: Path, body_model: BodyModel | None, backend: str,
                         device: torch.device) -> Predictor:
    from openhmr.inference.onnx import OnnxPredictor, onnx_available, read_metadata

    missing = onnx_available()
    if missing:
        raise BackendError(f"{path.name} is an ONNX graph, which needs {missing}")
    if device.type != "cpu":
        raise BackendError("ONNX graphs run on the CPU only (onnxruntime CPU provider)")
    meta = read_metadata(path)
    wanted = {"onnx": "fp32", "onnx-int8": "int8"}.get(backend)
    if backend not in ("auto", "onnx", "onnx-int8"):
        raise BackendError(f"{path.name} is an ONNX graph: use backend onnx or auto, not {backend!r}")
    if wanted and meta.get("precision") != wanted:
        raise BackendError(f"{path.name} holds a {meta.get('precision')} graph, not {wanted}")
    if body_model is None:
        raise InputError(f"{path.name}: pass the body model it was exported for (body_model=SMPL(...))")
    return OnnxPredictor(path, body_model)


def available_backends(device: str | torch.device = "cpu") -> dict[str, str | None]:
    """Each backend name → None if it can run here, else the reason it cannot."""
    from openhmr.inference.onnx import onnx_available

    device = torch.device(device)
    reasons: dict[str, str | None] = {name: None for name in BACKENDS}
    missing = onnx_available()
    for name in ("onnx", "onnx-int8"):
        if device.type != "cpu":
            reasons[name] = "ONNX Runtime here runs on the CPU only"
        elif missing:
            reasons[name] = missing
    if device.type == "cpu" and not torch.backends.mkldnn.is_available():
        for name in ("bf16", "compiled-bf16"):
            reasons[name] = "this torch has no oneDNN (mkldnn) for bf16"
    return reasons


__all__ = [
    "AUTO_PREFERENCE", "BACKENDS", "BackendError", "REDUCED_PRECISION", "available_backends",
    "build_backend", "check_agreement", "load_predictor",
]
