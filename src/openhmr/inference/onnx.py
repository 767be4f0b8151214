"""HMR as an ONNX graph: export, int8 quantisation, and an ONNX Runtime predictor.

The exported graph maps ``crops`` (B, 3, 224, 224) float32 RGB in [-1, 1] to
``theta`` (B, |Θ|), the last IEF iteration. With ``include_body`` the body
model is in the graph too and the outputs add ``vertices`` (B, V, 3),
``joints`` (B, J, 3) and ``kp3d_<set>`` (B, K, 3) for each keypoint set, all
metres in the body frame.

The file's metadata (``metadata_props``) records what a reader needs to use
it safely: ``openhmr_format`` (``openhmr.onnx/1``), ``body_model``,
``pose_size``, ``shape_size``, ``theta_size``, ``precision`` (fp32 or int8),
``batch`` (a number or ``dynamic``), ``include_body`` and ``keypoint_sets``.

int8 (:func:`quantize_int8`) is ONNX Runtime's static quantisation in QDQ
form: weights int8 per output channel, activations uint8 with ranges
calibrated on sample crops, on the convolutions only (the regressor and the
body model stay fp32). On CPUs with AVX512-VNNI ONNX Runtime runs these as
integer convolutions.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from openhmr.body.base import BodyModel
from openhmr.errors import OpenHMRError, WeightsError
from openhmr.inference.predictor import InferenceOutput, Predictor, ThetaNetwork
from openhmr.io.output_paths import replacing

if TYPE_CHECKING:
    from openhmr.nets.hmr import HMR

FORMAT = "openhmr.onnx/1"
OPSET = 18


class OnnxExportError(OpenHMRError):
    """The model could not be exported to, or read from, ONNX."""


class _BodyNetwork(nn.Module):
    """ThetaNetwork followed by the body model, for a self-contained graph."""

    def __init__(self, network: ThetaNetwork, body: BodyModel) -> None:
        super().__init__()
        self.network = network
        self.body = body
        self.set_names = list(body.keypoint_sets)

    def forward(self, crops: Tensor) -> tuple[Tensor, ...]:
        theta = self.network(crops)
        pose_end = 3 + self.body.pose_size
        out = self.body(theta[:, 3:pose_end], theta[:, pose_end:])
        return (theta, out.vertices, out.joints, *(out.keypoints[s] for s in self.set_names))


def export_onnx(model: HMR, path: str | Path, batch: int | None = None,
                include_body: bool = False, overwrite: bool = False) -> Path:
    """Write an HMR (``openhmr.nets.HMR``) as an ONNX file.

    Args:
        model: the HMR, fp32; its body model decides |Θ| (and is exported with
            ``include_body``).
        path: the ``.onnx`` file to write (weights inside, one file).
        batch: a fixed batch size, or None for a dynamic batch dimension.
        include_body: put the body model in the graph as well.
        overwrite: replace an existing file.
    Returns:
        the path written.
    Raises:
        OnnxExportError: the file exists (without ``overwrite``) or export failed.
    """
    import onnx

    path = Path(path)
    if path.exists() and not overwrite:
        raise OnnxExportError(f"{path} exists; pass --overwrite to replace it")
    if batch is not None and batch < 1:
        raise OnnxExportError(f"batch must be at least 1, got {batch}")
    body = model.body
    network = ThetaNetwork(model.encoder, model.regressor)
    # A copy in float32 on the CPU in eval mode: the caller's model keeps its
    # own dtype, device and training mode (an export used to switch dropout off).
    module: nn.Module = copy.deepcopy(_BodyNetwork(network, body) if include_body else network).float().cpu().eval()
    outputs = ["theta"]
    if include_body:
        outputs += ["vertices", "joints"] + [f"kp3d_{s}" for s in body.keypoint_sets]
    example = torch.zeros(batch or 2, 3, 224, 224)
    dynamic_shapes = None
    if batch is None:
        dynamic_shapes = {"crops": {0: torch.export.Dim("batch", min=1, max=4096)}}
    try:
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(
                module, (example,), None, input_names=["crops"], output_names=outputs,
                opset_version=OPSET, dynamo=True, dynamic_shapes=dynamic_shapes, external_data=False,
                verbose=False,
            )
            assert program is not None  # dynamo=True always returns an ONNXProgram
            proto = program.model_proto
    except Exception as e:  # noqa: BLE001 - the exporter raises many types
        raise OnnxExportError(f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    metadata = {
        "openhmr_format": FORMAT,
        "body_model": body.name,
        "pose_size": str(body.pose_size),
        "shape_size": str(body.shape_size),
        "theta_size": str(3 + body.pose_size + body.shape_size),
        "encoder": str(getattr(model, "encoder_name", "")),
        "precision": "fp32",
        "batch": "dynamic" if batch is None else str(batch),
        "include_body": "1" if include_body else "0",
        "keypoint_sets": ",".join(body.keypoint_sets) if include_body else "",
    }
    _set_metadata(proto, metadata)
    with replacing(path) as tmp:
        onnx.save_model(proto, str(tmp))
    return path


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hold back the exporter's notices about torch itself: that torchvision's
    operators cannot be registered (openhmr uses none) and torch's own
    deprecations. They say nothing about the user's model, and on a first
    export they would run ahead of the command's one-line report."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        registration.setLevel(level)


def _set_metadata(proto: Any, metadata: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value


def read_metadata(path: str | Path) -> dict[str, str]:
    """The openhmr metadata of an ONNX file (without loading its weights)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"ONNX file not found: {path}")
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf decode errors have many types
        raise WeightsError(f"cannot read {path}: not an ONNX file ({type(e).__name__})") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta.get("openhmr_format") != FORMAT:
        raise WeightsError(f"{path} is not an openhmr ONNX export (no {FORMAT} metadata); "
                           "write one with `openhmr export-onnx`")
    return meta


class _CropReader:
    """Feeds calibration crops to ONNX Runtime's calibrator, one batch at a time."""

    def __init__(self, crops: np.ndarray, batch: int | None) -> None:
        step = batch or 1
        self._batches = [crops[i:i + step] for i in range(0, len(crops) - step + 1, step)]
        self._index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._index >= len(self._batches):
            return None
        self._index += 1
        return {"crops": self._batches[self._index - 1]}

    def rewind(self) -> None:
        self._index = 0


def quantize_int8(fp32_path: str | Path, out_path: str | Path, calibration_crops: Tensor,
                  overwrite: bool = False) -> Path:
    """Static int8 quantisation (QDQ) of an exported fp32 HMR graph.

    Activation ranges are the min/max over ``calibration_crops`` (N, 3, 224,
    224) in [-1, 1]: use crops like the ones the model will see. Only
    convolutions are quantised; weights per output channel (int8), activations
    per tensor (uint8).

    Alternatives measured on ``calibrated_random_hmr`` (full ResNet-50, worst
    vertex error against fp32 on 8 crops): the QOperator format runs at the
    same speed as QDQ with the same result; int8 activations (S8S8) are ~30 %
    slower on AVX512-VNNI; also quantising Add/Relu/pooling/Gemm is ~10 %
    faster but less accurate; Percentile calibration (99.99) was 1.5–2.6×
    worse than MinMax on synthetic calibration crops and no better on real
    ones; keeping the stem conv in fp32 did not help. None of them brought the
    error anywhere near 5 mm on that model.

    Returns:
        the path written.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if out_path.exists() and not overwrite:
        raise OnnxExportError(f"{out_path} exists; pass --overwrite to replace it")
    meta = read_metadata(fp32_path)
    if meta.get("precision") != "fp32":
        raise OnnxExportError(f"{fp32_path} is already {meta.get('precision')}; quantise an fp32 export")
    batch = None if meta.get("batch") == "dynamic" else int(meta["batch"])
    crops = np.ascontiguousarray(calibration_crops.detach().float().cpu().numpy())
    if batch is not None and len(crops) < batch:
        raise OnnxExportError(f"need at least {batch} calibration crops for a batch-{batch} graph")
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "int8.onnx"
        # Shape inference and graph clean-up first, as ONNX Runtime advises.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(quantized), _CropReader(crops, batch),
            quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"], per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        proto = onnx.load_model(str(quantized))
    _set_metadata(proto, {**meta, "precision": "int8"})
    with replacing(out_path) as tmp:
        onnx.save_model(proto, str(tmp))
    return out_path


def ort_session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with all graph optimisations.

    Args:
        threads: intra-op threads (default: torch's thread count, i.e. the
            physical cores).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # ONNX Runtime's workers spin after each run by default; the body model
    # (torch, OpenMP) then runs on the same cores against them, and on a
    # shared machine they take cycles from everything else. Measured on the
    # 2-core CPU with another job running: batch-1 predict 37 ms median
    # without spinning against 59 ms with it (batch 16: 0.65 s against 0.87 s).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxPredictor(Predictor):
    """Θ from an exported graph run by ONNX Runtime on the CPU.

    Args:
        path: an ``openhmr export-onnx`` file (fp32 or int8).
        body: the body model the graph was exported for; checked against the
            file's metadata. Used for :meth:`predict` unless
            ``graph_body`` is set.
        threads: ONNX Runtime intra-op threads.
        graph_body: take vertices, joints and 3D keypoints from the graph
            (only for files exported with the body model).
    """

    def __init__(self, path: str | Path, body: BodyModel, threads: int | None = None,
                 graph_body: bool = False) -> None:
        super().__init__(body, "cpu")
        meta = read_metadata(path)
        self.path = Path(path)
        self.metadata = meta
        sizes = (body.name, str(body.pose_size), str(body.shape_size))
        if (meta.get("body_model"), meta.get("pose_size"), meta.get("shape_size")) != sizes:
            raise WeightsError(
                f"{self.path.name} was exported for {meta.get('body_model')} with Θ of "
                f"{meta.get('theta_size')} values, not for this {body.name} ({self.theta_size})")
        self.precision = meta.get("precision", "fp32")
        self.name = "onnx-int8" if self.precision == "int8" else "onnx"
        self.batch = None if meta.get("batch") == "dynamic" else int(meta.get("batch", "0") or 0)
        self.include_body = meta.get("include_body") == "1"
        if graph_body and not self.include_body:
            raise WeightsError(f"{self.path.name} has no body model in its graph (export with --with-body)")
        self.graph_body = graph_body
        self.keypoint_sets = [s for s in meta.get("keypoint_sets", "").split(",") if s]
        self.session = ort_session(path, threads)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, crops: Tensor, names: list[str] | None = None) -> list[np.ndarray]:
        from openhmr.errors import InputError

        if self.batch is not None and crops.shape[0] != self.batch:
            raise InputError(f"{self.path.name} was exported for batches of {self.batch} crops, "
                             f"got {crops.shape[0]} (export with --batch dynamic)")
        # The graph's crop size is fixed at export (the eager backends take any).
        height, width = self.session.get_inputs()[0].shape[2:]
        if isinstance(height, int) and isinstance(width, int) and tuple(crops.shape[2:]) != (height, width):
            raise InputError(f"{self.path.name} takes {height}×{width} crops, got "
                             f"{crops.shape[2]}×{crops.shape[3]}")
        x = np.ascontiguousarray(crops.detach().to("cpu", torch.float32).numpy())
        return self.session.run(names, {"crops": x})

    def _theta(self, crops: Tensor) -> Tensor:
        # Asking for theta alone lets ONNX Runtime skip a body model in the graph.
        return torch.from_numpy(self._run(crops, ["theta"])[0])

    def predict(self, crops: Tensor) -> InferenceOutput:
        if not self.graph_body:
            return super().predict(crops)
        from openhmr.geometry.camera import weak_perspective_project
        from openhmr.geometry.rotations import axis_angle_to_matrix

        arrays = dict(zip(self.output_names, self._run(self._check(crops))))
        theta = torch.from_numpy(arrays["theta"])
        cam, pose, betas = self.split(theta)
        keypoints3d = {s: torch.from_numpy(arrays[f"kp3d_{s}"]) for s in self.keypoint_sets}
        rotations = axis_angle_to_matrix(pose.reshape(pose.shape[0], -1, 3))
        return InferenceOutput(
            cam, pose, betas, torch.from_numpy(arrays["vertices"]), torch.from_numpy(arrays["joints"]),
            rotations, keypoints3d, {k: weak_perspective_project(v, cam) for k, v in keypoints3d.items()})


def onnx_available() -> str | None:
    """None if ONNX export and ONNX Runtime can be used, else why not."""
    for module in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install 'openhmr[onnx]')"
    return None


