"""Predictors: crops → Θ → body, the same contract for every execution backend.

A :class:`Predictor` maps a batch of crops (B, 3, 224, 224), RGB in [-1, 1],
to the final IEF estimate Θ = (cam, pose, betas) and, in :meth:`Predictor.predict`,
poses the body model for it (always fp32 torch, on the predictor's device) and
projects every keypoint set with the weak-perspective camera. Subclasses only
say how Θ is computed:

* :class:`TorchPredictor` — eager PyTorch, fp32 (the reference) or with bf16
  autocast;
* :class:`CompiledPredictor` — ``torch.compile`` (inductor, weights frozen
  into the graph, channels_last), one compilation per batch size, falling back
  to eager if compilation fails;
* ``openhmr.inference.onnx.OnnxPredictor`` — ONNX Runtime, fp32 or int8.

:func:`compare_thetas` measures how far two Θ batches are apart where it
matters: mesh vertices (mm) and 2D keypoints on the 224-pixel crop (px).
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from openhmr.body.base import BodyModel
from openhmr.geometry.camera import weak_perspective_project
from openhmr.nets.hmr import MeshEstimate

CROP_SIZE = 224
# Agreement with eager fp32 required before a reduced-precision backend is used.
VERTEX_TOLERANCE_MM = 5.0
KEYPOINT_TOLERANCE_PX = 1.0


#: What every predictor returns: the body for the final Θ of each crop.
InferenceOutput = MeshEstimate


class ThetaNetwork(nn.Module):
    """Encoder + IEF regressor of an HMR: ``forward(crops (B, 3, H, W)) -> Θ (B, |Θ|)``.

    The part of HMR that is compiled or exported; it returns only the last
    iteration's Θ, which is all inference needs.
    """

    def __init__(self, encoder: nn.Module, regressor: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.regressor = regressor

    def forward(self, crops: Tensor) -> Tensor:
        return self.regressor(self.encoder(crops))[-1]


class Predictor:
    """Crops → Θ (subclasses) → body (here).

    Every output is made under ``torch.inference_mode``: an inference tensor,
    which ``.clone()`` turns into an ordinary one before an in-place change or
    a loss to differentiate (a fit started from a prediction may use them as
    they are: ``openhmr.fit`` detaches its starts).

    Args:
        body: the body model Θ drives, moved to ``device`` (the module itself,
            as ``Module.to`` does) and run in its own dtype (float32 as SMPL
            and Anny are built; :func:`openhmr.inference.load_predictor`
            works on a float32 copy).
        device: where crops and outputs live.
    """

    name = "base"
    precision = "fp32"
    # Measured distance from eager fp32, set for reduced-precision backends
    # by openhmr.inference.load_predictor.
    agreement: "Agreement | None" = None

    def __init__(self, body: BodyModel, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.body = body.to(self.device).eval()
        self.pose_size = body.pose_size
        self.shape_size = body.shape_size

    @property
    def theta_size(self) -> int:
        return 3 + self.pose_size + self.shape_size

    def theta(self, crops: Tensor) -> Tensor:
        """Θ (B, |Θ|) float32 for crops (B, 3, 224, 224) in [-1, 1] (a tensor
        or numpy array, checked as ``__call__`` and ``predict`` check them)."""
        return self._theta(self._check(crops))

    def _theta(self, crops: Tensor) -> Tensor:
        """The backend's own crops → Θ, on checked float32 crops on its device."""
        raise NotImplementedError

    def split(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Θ (B, |Θ|) → cam (B, 3), pose (B, 3·J), betas (B, k)."""
        pose_end = 3 + self.pose_size
        return theta[:, :3], theta[:, 3:pose_end], theta[:, pose_end:]

    def __call__(self, crops: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Crops (B, 3, 224, 224) in [-1, 1] → (cam (B, 3), pose (B, 3·J), betas (B, k))."""
        return self.split(self.theta(crops))

    def body_from_theta(self, theta: Tensor) -> InferenceOutput:
        """Pose the body model (in its dtype) for Θ (B, |Θ|) and project its keypoints."""
        cam, pose, betas = self.split(theta.to(self.device, torch.float32))
        with torch.inference_mode():
            body = self.body(pose, betas)
            keypoints2d = {k: weak_perspective_project(v, cam) for k, v in body.keypoints.items()}
        return InferenceOutput(cam, pose, betas, body.vertices, body.joints, body.rotations,
                               dict(body.keypoints), keypoints2d)

    def predict(self, crops: Tensor) -> InferenceOutput:
        """The whole inference path: crops → Θ → vertices, joints, keypoints."""
        return self.body_from_theta(self.theta(crops))

    def _check(self, crops: Tensor) -> Tensor:
        from openhmr.errors import InputError

        crops = torch.as_tensor(crops)
        if crops.ndim != 4 or crops.shape[1] != 3:
            raise InputError(f"crops must be (B, 3, H, W), got {tuple(crops.shape)}")
        if crops.shape[0] == 0:
            raise InputError("crops hold no crop (B = 0)")
        if not crops.is_floating_point():
            raise InputError(f"crops must be floating point in [-1, 1], got {crops.dtype}; "
                             "normalize_crop scales uint8 (B, H, W, 3) crops")
        return crops.to(self.device, torch.float32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.name!r}, device={self.device})"


class TorchPredictor(Predictor):
    """Eager PyTorch: fp32 (``name="torch"``, the reference) or bf16 autocast.

    Args:
        network: a :class:`ThetaNetwork` (or any crops → Θ module), eval mode.
        bf16: run convolutions and matrix products in bfloat16 (CPU: oneDNN
            with AVX512-BF16 / AMX; CUDA: tensor cores); Θ is returned in fp32.
        channels_last: NHWC memory layout, which oneDNN and cuDNN prefer.
    """

    def __init__(self, network: nn.Module, body: BodyModel, device: str | torch.device = "cpu",
                 bf16: bool = False, channels_last: bool | None = None) -> None:
        super().__init__(body, device)
        self.bf16 = bf16
        self.channels_last = bf16 if channels_last is None else channels_last
        self.name = "bf16" if bf16 else "torch"
        self.precision = "bf16" if bf16 else "fp32"
        network = network.to(self.device).eval()
        if self.channels_last:
            # A copy: changing the layout in place would also change it for
            # every other predictor sharing these modules.
            # Module.to takes memory_format (documented); torch's overloads leave it out.
            network = copy.deepcopy(network).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.network = network

    def _theta(self, crops: Tensor) -> Tensor:
        crops = crops.to(self.device, torch.float32)
        if self.channels_last:
            crops = crops.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.network(crops).float()


class CompiledPredictor(Predictor):
    """``torch.compile`` with inductor: weights frozen into the graph, channels_last.

    Freezing (``torch._inductor.config.freezing``) turns parameters into
    constants, so inductor folds each BN that follows a conv into its weights
    and pre-packs weights for oneDNN. Shapes are static (``dynamic=False``):
    the first call at each batch size compiles (about 15–20 s for ResNet-50 on
    2 CPU cores, in every process), later calls reuse it, and a batch smaller
    than one already compiled for is padded to it instead of compiling again. If compilation fails (no C++ compiler, unsupported
    platform) the predictor warns once and runs eagerly from then on.

    Args:
        network: a :class:`ThetaNetwork`, eval mode.
        bf16: compile the bf16-autocast graph instead of fp32.
        mode: ``torch.compile`` mode (None, "max-autotune", ...).
    """

    def __init__(self, network: nn.Module, body: BodyModel, device: str | torch.device = "cpu",
                 bf16: bool = False, mode: str | None = None) -> None:
        super().__init__(body, device)
        self.bf16 = bf16
        self.name = "compiled-bf16" if bf16 else "compiled"
        self.precision = "bf16" if bf16 else "fp32"
        network = copy.deepcopy(network).to(self.device).eval()
        # Module.to takes memory_format (documented); torch's overloads leave it out.
        self.network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.mode = mode
        # Process-wide, but it only changes graphs compiled without autograd:
        # parameters become constants that inductor may fold and pre-pack.
        # (Patching it around each call instead ran ~15× slower here.)
        import torch._dynamo.config as dynamo_config
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        # Every predictor's graphs, one per batch size and precision, hang off
        # ThetaNetwork.forward's one code object, and dynamo stops compiling a
        # code object after recompile_limit graphs (8 by default), running it
        # eagerly without an error: a ninth graph in a process (a bench over
        # many batch sizes) was timed eager under the name "compiled".
        name = _recompile_limit_name()
        setattr(dynamo_config, name, max(getattr(dynamo_config, name), COMPILED_GRAPHS_LIMIT))
        self._compiled: dict[int, nn.Module] = {}
        self.failed: str | None = None

    def _compiled_for(self, batch: int) -> nn.Module:
        # One compiled module per batch size, each compiled once with static shapes.
        if batch not in self._compiled:
            # cpp_wrapper calls the kernels from generated C++ instead of
            # Python: ~0.9 ms less per call at batch 1 (of ~25), a few seconds
            # more to compile, identical results. A mode brings its own options.
            extra = {"mode": self.mode} if self.mode else {"options": {"cpp_wrapper": True}}
            # A module compiles to a module (OptimizedModule); torch's stubs say a callable.
            self._compiled[batch] = cast(nn.Module, torch.compile(self.network, dynamic=False, **extra))
        return self._compiled[batch]

    def _run(self, module: nn.Module, crops: Tensor) -> Tensor:
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return module(crops).float()

    def _padded_size(self, batch: int) -> int:
        """The batch size to run ``batch`` crops at: ``batch`` itself once
        compiled for, else the smallest larger size already compiled (zero crops
        fill the rest: a few wasted crops cost milliseconds, a new compilation
        ~15 s — a video's last, shorter batch), else ``batch`` (compile it)."""
        if batch in self._compiled:
            return batch
        return min((size for size in self._compiled if size > batch), default=batch)

    def _theta(self, crops: Tensor) -> Tensor:
        # Always on an inference tensor made here: dynamo guards on a tensor's
        # dispatch keys, so the demo's crops (made under inference_mode) and
        # ordinary ones (the load-time compile and accuracy check) each
        # compiled a graph of their own, and the one checked was not the one run.
        with torch.inference_mode():
            return self._theta_inference(
                crops.to(self.device, torch.float32).clone(memory_format=torch.channels_last))

    def _theta_inference(self, crops: Tensor) -> Tensor:
        if self.failed is None:
            try:
                batch = crops.shape[0]
                size = self._padded_size(batch)
                if size > batch:
                    filler = crops.new_zeros((size - batch, *crops.shape[1:]))
                    padded = torch.cat([crops, filler]).contiguous(memory_format=torch.channels_last)
                    return self._run(self._compiled[size], padded)[:batch]
                new = batch not in self._compiled
                graphs = _graphs_made()
                out = self._run(self._compiled_for(batch), crops)
                if not new or _graphs_made() > graphs:
                    return out
                # dynamo ran it eagerly (its recompile limit reached, say): say so
                name = _recompile_limit_name()
                raise RuntimeError(f"no graph was compiled (torch._dynamo's {name} "
                                   f"{getattr(torch._dynamo.config, name)} reached?)")
            except Exception as e:  # noqa: BLE001 - any compiler failure falls back to eager
                self.failed = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                print(f"openhmr: torch.compile failed ({self.failed}); running eagerly", file=sys.stderr)
        return self._run(self.network, crops)

    def compile_for(self, batch: int, height: int = CROP_SIZE, width: int = CROP_SIZE) -> None:
        """Compile now for ``batch`` crops (instead of on the first call)."""
        self.theta(torch.zeros(batch, 3, height, width, device=self.device))


#: The graphs dynamo may compile from ThetaNetwork.forward in one process
#: (its ``recompile_limit`` is raised to this): compiled predictors × their
#: batch sizes.
COMPILED_GRAPHS_LIMIT = 64


def _recompile_limit_name() -> str:
    """dynamo's setting for the graphs one function may have: ``recompile_limit``
    from torch 2.7, ``cache_size_limit`` before."""
    import torch._dynamo.config as dynamo_config

    return "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"


def _graphs_made() -> int:
    """How many graphs dynamo has compiled in this process."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@dataclass
class Agreement:
    """How far a backend's result is from the reference, worst case over a batch.

    Attributes:
        vertex_mm: largest distance between corresponding mesh vertices, mm.
        keypoint_px: largest distance between corresponding 2D keypoints (all
            sets of the body model) on the 224-pixel crop, px.
        theta: largest absolute difference of any Θ component.
    """

    vertex_mm: float
    keypoint_px: float
    theta: float

    def within(self, vertex_mm: float = VERTEX_TOLERANCE_MM, keypoint_px: float = KEYPOINT_TOLERANCE_PX) -> bool:
        return self.vertex_mm <= vertex_mm and self.keypoint_px <= keypoint_px

    def __str__(self) -> str:
        return f"vertices ≤ {self.vertex_mm:.3f} mm, 2D keypoints ≤ {self.keypoint_px:.3f} px, |ΔΘ| ≤ {self.theta:.2e}"


def compare_thetas(body: BodyModel, reference: Tensor, other: Tensor, crop_size: int = CROP_SIZE) -> Agreement:
    """Vertex and 2D keypoint distances between the bodies of two Θ batches.

    Both Θ (B, |Θ|) are posed with the same fp32 body model, so only the
    difference in Θ shows.
    """
    device = next(iter(body.buffers())).device
    results = []
    pose_end = 3 + body.pose_size
    for theta in (reference, other):
        theta = theta.to(device, torch.float32)
        cam, pose, betas = theta[:, :3], theta[:, 3:pose_end], theta[:, pose_end:]
        with torch.inference_mode():
            out = body(pose, betas)
            kp = torch.cat([weak_perspective_project(v, cam) for v in out.keypoints.values()], dim=1)
        results.append((out.vertices, kp))
    (v0, k0), (v1, k1) = results
    return Agreement(
        vertex_mm=float((v0 - v1).norm(dim=-1).max()) * 1000.0,
        keypoint_px=float((k0 - k1).norm(dim=-1).max()) * crop_size / 2.0,
        theta=float((reference.float().cpu() - other.float().cpu()).abs().max()),
    )


def agreement(reference: Predictor, candidate: Predictor, crops: Tensor) -> Agreement:
    """:func:`compare_thetas` of two predictors on the same crops."""
    return compare_thetas(reference.body, reference.theta(crops), candidate.theta(crops))
