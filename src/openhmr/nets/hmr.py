"""The HMR network: encoder → IEF regressor → body model → weak-perspective camera.

``HMR(body_model)`` is the whole model of Kanazawa et al. (HMR_REFERENCE §1):

1. ``encode``: a ResNet-50 maps the crop (B, 3, 224, 224) in [-1, 1] to φ (B, 2048).
2. ``regress``: the IEF regressor refines Θ = [cam (3), pose (3·J), shape (k)]
   from its learned mean in T = 3 steps.
3. ``decode``: the body model poses the mesh for the last Θ, and every keypoint
   set it returns is projected with the weak-perspective camera to normalised
   crop coordinates.

The network part (steps 1–2) is separable from the body model so that it can
be compiled or exported on its own. The body model decides |Θ| (SMPL: 85).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from openhmr.body.base import BodyModel
from openhmr.errors import InputError, WeightsError
from openhmr.geometry.camera import weak_perspective_project
from openhmr.geometry.rotations import axis_angle_to_matrix
from openhmr.nets.regressor import IEFRegressor
from openhmr.nets.resnet import build_encoder
from openhmr.nets.tiny import TinyEncoder

# HMR's initial camera scale (trainer.load_mean_param).
MEAN_CAMERA_SCALE = 0.9


@dataclass
class MeshEstimate:
    """The body for a batch of B Θ estimates: what inference returns.

    Attributes:
        cam: (B, 3) weak-perspective camera (s, tx, ty).
        pose: (B, 3·J) axis-angle pose, joint 0 the global rotation.
        betas: (B, k) shape parameters.
        vertices: (B, V, 3) mesh, metres, body frame (y down under HMR's mean root).
        joints: (B, J, 3) posed skeleton joints, metres.
        rotations: (B, J, 3, 3) local joint rotations.
        keypoints3d: every keypoint set of the body model, (B, K, 3) metres.
        keypoints2d: the same sets projected, (B, K, 2) normalised crop
            coordinates (−1 left/top edge, +1 right/bottom).
    """

    cam: Tensor
    pose: Tensor
    betas: Tensor
    vertices: Tensor
    joints: Tensor
    rotations: Tensor
    keypoints3d: dict[str, Tensor]
    keypoints2d: dict[str, Tensor]


@dataclass
class HMROutput(MeshEstimate):
    """HMR's prediction for a batch of B crops: the body for the last Θ
    (:class:`MeshEstimate`) plus what training needs.

    Attributes:
        thetas: Θ (B, |Θ|) after each IEF iteration; ``thetas[-1]`` is the result.
        features: (B, 2048) image features φ.
        iteration_rotations: (B, J, 3, 3) rotations for every Θ in ``thetas``
            when asked for (training's adversarial prior), else empty.
    """

    thetas: list[Tensor] = field(default_factory=list)
    features: Tensor | None = None
    iteration_rotations: list[Tensor] = field(default_factory=list)


def mean_theta_from_params(pose: Tensor | np.ndarray, shape: Tensor | np.ndarray) -> Tensor:
    """Θ₀ from a mean pose and shape, as ``trainer.load_mean_param`` (HMR_REFERENCE §3.2).

    s = 0.9, tx = ty = 0; the pose with its root rotation replaced by π
    about x (so the body stands upright in image coordinates, y down); the
    shape as given.

    Args:
        pose: (3·J,) axis-angle; shape: (k,); tensors or numpy arrays
            (:func:`openhmr.io.mean_params.load_mean_params` gives those).
    Returns:
        (3 + 3·J + k,) float32.
    """
    pose, shape = torch.as_tensor(pose), torch.as_tensor(shape)
    pose = pose.detach().clone().float().reshape(-1)
    pose[:3] = torch.tensor([math.pi, 0.0, 0.0])
    cam = torch.tensor([MEAN_CAMERA_SCALE, 0.0, 0.0])
    return torch.cat([cam, pose, shape.detach().float().reshape(-1)])


def default_mean_theta(body_model: BodyModel) -> Tensor:
    """Θ₀ when neither a learned mean nor HMR's mean-parameters file is given:
    :func:`mean_theta_from_params` of the body's default pose and zero shape
    (the original starts from the mean pose and shape of its
    ``neutral_smpl_mean_params.h5``, ``openhmr.io.mean_params``).

    Returns:
        (|Θ|,) float32.
    """
    return mean_theta_from_params(body_model.default_pose(), torch.zeros(body_model.shape_size))


def encoder_from_name(name: str, out_features: int | None = None) -> nn.Module:
    """The encoder a name (or a weights file's metadata) gives: ``resnet50_v2``
    (HMR's), ``resnet50_v1``, or ``tiny`` (:class:`TinyEncoder`, of smoke runs,
    with ``out_features`` features, by default 128).

    Raises:
        ValueError: an unknown name.
    """
    if name == TinyEncoder.name:
        return TinyEncoder() if out_features is None else TinyEncoder(out_features)
    return build_encoder(name)


def _tiny_features(tensors: dict[str, np.ndarray]) -> int | None:
    """A tiny encoder's feature count, read off its saved head (None: not there)."""
    head = tensors.get("encoder.head.weight")
    return int(head.shape[0]) if head is not None and head.ndim == 4 else None


class HMR(nn.Module):
    """Human Mesh Recovery: ``forward(images (B, 3, 224, 224) in [-1, 1]) -> HMROutput``.

    Args:
        body_model: the body model Θ drives (SMPL for the original weights).
        encoder: ``"resnet50_v2"`` (HMR's, slim layout), ``"resnet50_v1"``
            (torchvision layout) or any module mapping images to (B, F).
        num_iterations: IEF steps T (3).
        mean_theta: (|Θ|,) initial Θ₀; default :func:`default_mean_theta`
            (:func:`mean_theta_from_params` builds HMR's from its mean file).
        regressor_hidden: width of the regressor's two hidden layers (1024).
        regressor_dropout: their dropout probability in training (0.5).
    """

    def __init__(
        self,
        body_model: BodyModel,
        encoder: str | nn.Module = "resnet50_v2",
        num_iterations: int = 3,
        mean_theta: Tensor | np.ndarray | None = None,
        regressor_hidden: int = 1024,
        regressor_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.body = body_model
        self.encoder = encoder_from_name(encoder) if isinstance(encoder, str) else encoder
        self.encoder_name = str(getattr(self.encoder, "name", type(self.encoder).__name__))
        feature_dim = int(getattr(self.encoder, "out_features", 2048))
        if mean_theta is None:
            mean_theta = default_mean_theta(body_model)
        mean_theta = torch.as_tensor(mean_theta)  # a numpy array too
        if mean_theta.numel() != self.theta_size:
            raise ValueError(f"mean_theta has {mean_theta.numel()} values, Θ for {body_model.name} has {self.theta_size}")
        self.regressor = IEFRegressor(mean_theta, feature_dim=feature_dim, hidden=regressor_hidden,
                                      num_iterations=num_iterations, dropout=regressor_dropout)

    # -- Θ layout ---------------------------------------------------------

    @property
    def theta_size(self) -> int:
        """|Θ| = 3 camera + 3·J pose + k shape (SMPL: 85)."""
        return 3 + self.body.pose_size + self.body.shape_size

    def split_theta(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Θ (B, |Θ|) → cam (B, 3), pose (B, 3·J), betas (B, k)."""
        if theta.ndim != 2 or theta.shape[1] != self.theta_size:
            raise ValueError(f"Θ must be (B, {self.theta_size}) for {self.body.name} (3 camera + "
                             f"{self.body.pose_size} pose + {self.body.shape_size} shape), got {tuple(theta.shape)}")
        pose_end = 3 + self.body.pose_size
        return theta[:, :3], theta[:, 3:pose_end], theta[:, pose_end:]

    def pose_rotations(self, theta: Tensor) -> Tensor:
        """Local joint rotations (B, J, 3, 3) of Θ by Rodrigues alone (no mesh).

        What the adversarial prior needs for every IEF iteration, without
        running the body model three times.
        """
        _, pose, _ = self.split_theta(theta)
        return axis_angle_to_matrix(pose.reshape(pose.shape[0], -1, 3))

    # -- network ----------------------------------------------------------

    def encode(self, images: Tensor) -> Tensor:
        """Images (B, 3, H, W) in [-1, 1] → features φ (B, 2048).

        Raises:
            ValueError: ``images`` is not a float (B ≥ 1, 3, H, W) tensor
                (``openhmr.data.crop.normalize_crop`` makes one from uint8
                (B, H, W, 3) crops). The value range is not checked: that
                would cost a device sync per batch.
        """
        if not isinstance(images, Tensor):
            raise ValueError(f"images must be a torch tensor (B, 3, H, W), got {type(images).__name__}; "
                             "normalize_crop turns uint8 (B, H, W, 3) crops into one")
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
            hint = "; that is channels-last: normalize_crop makes NCHW" if (
                images.ndim == 4 and images.shape[-1] == 3) else ""
            raise ValueError(f"images must be (B, 3, H, W) with B ≥ 1, got {tuple(images.shape)}{hint}")
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point in [-1, 1], got {images.dtype}; "
                             "normalize_crop scales uint8 crops")
        weight = next(self.encoder.parameters(), None)
        if weight is not None and images.dtype != weight.dtype:
            images = images.to(weight.dtype)  # float64 crops for a float32 network, say
        return self.encoder(images)

    def regress(self, features: Tensor) -> list[Tensor]:
        """Features φ (B, F) → Θ (B, |Θ|) after each of the T IEF iterations."""
        return self.regressor(features)

    def decode(self, theta: Tensor, mesh: bool = True) -> MeshEstimate:
        """Run the body model and the camera for one Θ (B, |Θ|).

        Args:
            mesh: pose the whole mesh. Training's losses use only joints,
                rotations and keypoints; with ``mesh=False`` the body model
                computes those alone where it can
                (:meth:`~openhmr.body.base.BodyModel.forward_keypoints`: Anny
                poses ~250 points instead of its mesh, SMPL runs as usual),
                and ``vertices`` may be empty (B, 0, 3).
        Returns:
            the :class:`MeshEstimate` of Θ.
        """
        cam, pose, betas = self.split_theta(theta)
        body = self.body(pose, betas) if mesh else self.body.forward_keypoints(pose, betas)
        keypoints2d = {name: weak_perspective_project(k, cam) for name, k in body.keypoints.items()}
        return MeshEstimate(cam=cam, pose=pose, betas=betas, vertices=body.vertices, joints=body.joints,
                            rotations=body.rotations, keypoints3d=body.keypoints, keypoints2d=keypoints2d)

    def forward(self, images: Tensor, rotations_for_all_iterations: bool = False) -> HMROutput:
        """Predict bodies for a batch of crops.

        Args:
            images: (B, 3, 224, 224) RGB crops in [-1, 1], NCHW.
            rotations_for_all_iterations: also return the joint rotations of
                every IEF iteration (``iteration_rotations``), for training.
        """
        features = self.encode(images)
        thetas = self.regress(features)
        last = self.decode(thetas[-1])
        out = HMROutput(thetas=thetas, features=features,  # the estimate's fields, not copied
                        **{f.name: getattr(last, f.name) for f in fields(MeshEstimate)})
        if rotations_for_all_iterations:
            out.iteration_rotations = [self.pose_rotations(t) for t in thetas[:-1]] + [out.rotations]
        return out

    # -- weight files -----------------------------------------------------

    def network_state(self) -> dict[str, Tensor]:
        """The weights a file stores: ``encoder.*`` and ``regressor.*`` (no body model)."""
        state = {}
        for part in ("encoder", "regressor"):
            for name, tensor in getattr(self, part).state_dict().items():
                if not name.endswith("num_batches_tracked"):
                    state[f"{part}.{name}"] = tensor
        return state

    def save_pretrained(
        self,
        path: str | Path,
        discriminator: nn.Module | None = None,
        overwrite: bool = False,
        source: str = "openhmr",
    ) -> None:
        """Write the network (and optionally the discriminator) to ``.safetensors``.

        The metadata records the body model name and |Θ| so that
        :meth:`from_pretrained` refuses the file for another body model.
        """
        from openhmr.io.hmr_weights import weights_metadata, write_weights

        path = Path(path)
        if path.exists() and not overwrite:
            raise InputError(f"{path} exists; pass overwrite=True to replace it")
        tensors = {k: v.detach().float().cpu().numpy() for k, v in self.network_state().items()}
        # Only the encoder's name is recorded: one that name does not rebuild would
        # make a file from_pretrained refuses. Said now, before writing it.
        try:
            with torch.device("meta"):
                rebuilt = encoder_from_name(self.encoder_name, _tiny_features(tensors))
            same = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == {
                k: tuple(v.shape) for k, v in self.encoder.state_dict().items()}
        except ValueError:
            same = False
        if not same:
            raise InputError(f"the encoder ({self.encoder_name}) is not one a weights file can name "
                             "(resnet50_v2, resnet50_v1 or tiny, as built by name): save it with torch.save "
                             "instead")
        parts = ["encoder", "regressor"]
        if discriminator is not None:
            for name, tensor in discriminator.state_dict().items():
                tensors[f"discriminator.{name}"] = tensor.detach().float().cpu().numpy()
            parts.append("discriminator")
        metadata = weights_metadata(
            body_model=self.body.name, theta_size=self.theta_size, encoder=self.encoder_name,
            num_iterations=self.regressor.num_iterations, parts=parts, source=source,
        )
        write_weights(path, tensors, metadata)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        body_model: BodyModel | None = None,
        map_location: str | torch.device = "cpu",
    ) -> "HMR":
        """Load weights written by ``openhmr convert-tf`` or :meth:`save_pretrained`.

        Args:
            path: the ``.safetensors`` file.
            body_model: the body model the weights were made for. If None,
                the one their metadata names: for SMPL, the model file named
                by the environment variable ``OPENHMR_SMPL``; for Anny,
                ``Anny()``.
            map_location: device of the returned model.
        Returns:
            the model in eval mode.
        Raises:
            WeightsError: missing or corrupt file, or weights made for another
                body model, encoder or Θ size.
        """
        from openhmr.io.hmr_weights import read_weights

        tensors, meta = read_weights(path)
        path = Path(path)
        made_for = meta.get("body_model", "?")
        if body_model is None:
            body_model = _default_body_model(made_for, path)
        if not isinstance(body_model, BodyModel):
            raise TypeError(f"body_model must be a body model such as SMPL('smpl.npz') or Anny(), "
                            f"got {type(body_model).__name__}")
        if body_model.name != made_for:
            raise WeightsError(f"{path.name} was made for the {made_for!r} body model, not {body_model.name!r}")
        theta_size = 3 + body_model.pose_size + body_model.shape_size
        if meta.get("theta_size") != str(theta_size):
            raise WeightsError(
                f"{path.name} regresses {meta.get('theta_size')} parameters but this "
                f"{body_model.name} model needs {theta_size} (3 camera + {body_model.pose_size} pose "
                f"+ {body_model.shape_size} shape)"
            )
        try:
            num_iterations = int(meta.get("num_iterations", "3"))
            # The encoder is built without initialising its 23M weights, which
            # the file overwrites anyway; every tensor is then loaded below.
            with torch.device("meta"):
                encoder = encoder_from_name(meta.get("encoder", "resnet50_v2"), _tiny_features(tensors))
            encoder = encoder.to_empty(device="cpu")
            for name, buffer in encoder.named_buffers():
                if name.endswith("num_batches_tracked"):
                    buffer.zero_()
            # A trained run may have chosen another width (openhmr train's regressor_hidden).
            fc1 = tensors.get("regressor.fc1.weight")
            hidden = int(fc1.shape[0]) if fc1 is not None and fc1.ndim == 2 else 1024
            model = cls(body_model, encoder=encoder, num_iterations=num_iterations, regressor_hidden=hidden)
        except ValueError as e:
            raise WeightsError(f"{path.name} has unusable metadata ({e})") from None
        model.load_network_state(tensors, path.name)
        return model.to(map_location).eval()

    def load_network_state(self, tensors: dict[str, np.ndarray], origin: str = "weights") -> None:
        """Copy ``encoder.*`` / ``regressor.*`` arrays into the model, all or nothing.

        ``discriminator.*`` entries are ignored (see
        :meth:`FactorizedDiscriminator.load_weights`). Raises WeightsError on a
        missing, extra or misshapen tensor.
        """
        own = self.network_state()
        given = {k: v for k, v in tensors.items() if not k.startswith("discriminator.")}
        missing = sorted(set(own) - set(given))
        extra = sorted(set(given) - set(own))
        if missing or extra:
            detail = f"lacks {missing[0]}" if missing else f"has unexpected {extra[0]}"
            count = len(missing) + len(extra)
            raise WeightsError(f"{origin} does not match this network: it {detail} ({count} mismatches)")
        for name, target in own.items():
            if tuple(given[name].shape) != tuple(target.shape):
                raise WeightsError(
                    f"{origin}: {name} has shape {list(given[name].shape)}, the network needs {list(target.shape)}"
                )
            values = np.asarray(given[name])
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                # One NaN (a broken save, a diverged run) would make every estimate NaN.
                raise WeightsError(f"{origin}: {name} holds NaN or infinite values")
        with torch.no_grad():
            for name, target in own.items():
                target.copy_(torch.as_tensor(np.asarray(given[name])))


def _default_body_model(name: str, weights: Path) -> BodyModel:
    """The body model a weight file names, when the caller gave none."""
    if name == "smpl":
        smpl_path = os.environ.get("OPENHMR_SMPL")
        if not smpl_path:
            raise InputError(
                f"{weights.name} was made for SMPL: pass body_model=SMPL(path) or set OPENHMR_SMPL "
                "to a SMPL model file (.pkl or .npz, e.g. from `openhmr convert-tf --smpl-out`)"
            )
        from openhmr.body.smpl import SMPL

        return SMPL(smpl_path)
    if name == "anny":
        from openhmr.body.anny import Anny

        return Anny()
    raise InputError(f"{weights.name} was made for the {name!r} body model: pass body_model=")
