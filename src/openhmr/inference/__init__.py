"""Fast inference: one predictor interface over eager, compiled, ONNX Runtime
and reduced-precision execution (see ``openhmr.inference.backends``)."""

from openhmr.inference.backends import (
    AUTO_PREFERENCE,
    BACKENDS,
    REDUCED_PRECISION,
    BackendError,
    available_backends,
    build_backend,
    check_agreement,
    load_predictor,
)
from openhmr.inference.predictor import (
    Agreement,
    CompiledPredictor,
    InferenceOutput,
    Predictor,
    ThetaNetwork,
    TorchPredictor,
    compare_thetas,
)

__all__ = [
    "AUTO_PREFERENCE", "Agreement", "BACKENDS", "BackendError", "CompiledPredictor", "InferenceOutput",
    "Predictor", "REDUCED_PRECISION", "ThetaNetwork", "TorchPredictor", "available_backends",
    "build_backend", "check_agreement", "compare_thetas", "load_predictor",
]
