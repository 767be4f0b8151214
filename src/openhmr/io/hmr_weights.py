"""HMR weights: the TF → PyTorch variable map and openhmr's safetensors weight files.

**The released TF checkpoint** (``model.ckpt-667589``, HMR_REFERENCE §13) holds
840 variables. Each falls in exactly one class:

* model variables, converted to a tensor of ours (:func:`map_tf_variable`):
  ``resnet_v2_50/…`` → ``encoder.…`` (:class:`~openhmr.nets.resnet.ResNet50V2`),
  ``3D_module/fc{1,2,3}`` and ``mean_param`` → ``regressor.…``
  (:class:`~openhmr.nets.regressor.IEFRegressor`), ``D/…`` →
  ``discriminator.…`` (:class:`~openhmr.nets.discriminator.FactorizedDiscriminator`);
* training state, skipped: Adam slots (``…/Adam``, ``…/Adam_1``), the Adam
  ``beta{1,2}_power[_1]`` accumulators, ``global_step`` and eight
  hyper-parameter scalars (Q14);
* slim's ImageNet classifier ``resnet_v2_50/logits/…``, skipped: it is in
  the ImageNet checkpoint HMR's training starts from
  (``resnet_v2_50_2017_04_14``, HMR_REFERENCE §2), whose other variables
  are the encoder's, and has no place in HMR;
* the six SMPL constants, turned into openhmr's SMPL ``.npz`` layout by
  :func:`smpl_arrays_from_checkpoint`.

A variable in none of these classes is an error, and so is a tensor of ours
that no variable fills: a conversion is complete or it fails.

Layouts: TF conv kernels are [kh, kw, in, out] → [out, in, kh, kw]; dense
weights [in, out] → [out, in]; the discriminator's 1×1 convs [1, 1, in, out]
→ Linear [out, in]; vectors and ``mean_param`` [1, |Θ|] are copied; BN
gamma/beta/moving_mean/moving_variance → weight/bias/running_mean/running_var.

**openhmr weight files** are ``.safetensors`` whose metadata records the body
model and Θ size they were made for (:func:`write_weights`, :func:`read_weights`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openhmr.errors import SPECIAL_FILE, WeightsError, is_special_file
from openhmr.progress import track

ENCODER, REGRESSOR, DISCRIMINATOR = "encoder", "regressor", "discriminator"
PARTS: tuple[str, ...] = (ENCODER, REGRESSOR, DISCRIMINATOR)

# The TF SMPL layer's non-trainable variables (HMR_REFERENCE §4.1).
SMPL_CONSTANTS: tuple[str, ...] = (
    "v_template", "shapedirs", "posedirs", "J_regressor", "lbs_weights", "cocoplus_regressor",
)
# Scalars saved by the internal training code the checkpoint came from (Q14).
HYPERPARAMETERS: tuple[str, ...] = (
    "d_loss_weight", "d_lr", "d_wd", "e_3d_weight", "e_cam_weight", "e_loss_weight", "e_lr", "e_wd",
)
SMPL_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

# HMR's SMPL: Θ = 3 camera + 72 pose + 10 betas; D sees 23 joints and 10 betas.
SMPL_THETA_SIZE = 85
SMPL_D_JOINTS = 23
SMPL_D_BETAS = 10

WEIGHTS_FORMAT = "openhmr.hmr"
WEIGHTS_FORMAT_VERSION = "1"

_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
_PARAM = {"weights": "weight", "biases": "bias"}
_RESNET_ROOT = re.compile(r"resnet_v2_50/conv1/(weights|biases)")
_RESNET_POSTNORM = re.compile(r"resnet_v2_50/postnorm/(beta|gamma|moving_mean|moving_variance)")
_RESNET_CLASSIFIER = re.compile(r"resnet_v2_50/logits/(weights|biases)")
_RESNET_UNIT = re.compile(r"resnet_v2_50/block(\d+)/unit_(\d+)/bottleneck_v2/(.+)")
_UNIT_BN = re.compile(r"(preact|conv1/BatchNorm|conv2/BatchNorm)/(beta|gamma|moving_mean|moving_variance)")
_UNIT_CONV = re.compile(r"(conv1|conv2|conv3|shortcut)/(weights|biases)")
_REGRESSOR_FC = re.compile(r"3D_module/(fc[123])/(weights|biases)")
_D_POSE_OUT = re.compile(r"D/pose_out_j(\d+)/(weights|biases)")
_D_LAYERS = re.compile(
    r"D/(D_conv1|D_conv2|D_alljoints_fc1|D_alljoints_fc2|D_alljoints_out|"
    r"shape_fc1/shape_fc1_1|shape_fc1/shape_fc1_2|shape_final)/(weights|biases)"
)
_D_TORCH = {
    "D_conv1": "conv1", "D_conv2": "conv2",
    "D_alljoints_fc1": "alljoints_fc1", "D_alljoints_fc2": "alljoints_fc2", "D_alljoints_out": "alljoints_out",
    "shape_fc1/shape_fc1_1": "shape_fc1", "shape_fc1/shape_fc1_2": "shape_fc2", "shape_final": "shape_out",
}


@dataclass(frozen=True)
class TensorMapping:
    """Where one TF variable goes.

    Attributes:
        tf_name: the checkpoint variable, e.g. ``3D_module/fc1/weights``.
        torch_name: our tensor, e.g. ``regressor.fc1.weight``.
        part: ``encoder``, ``regressor`` or ``discriminator``.
        layout: ``conv`` ([kh,kw,in,out] → [out,in,kh,kw]), ``dense``
            ([in,out] → [out,in]), ``pointwise`` ([1,1,in,out] → [out,in]) or
            ``copy``.
    """

    tf_name: str
    torch_name: str
    part: str
    layout: str


def variable_role(tf_name: str) -> str:
    """Class of a checkpoint variable: ``model``, ``optimizer``, ``hyperparameter``,
    ``classifier`` (slim's ImageNet logits) or ``smpl``."""
    if _RESNET_CLASSIFIER.fullmatch(tf_name):
        return "classifier"
    if tf_name.endswith(("/Adam", "/Adam_1")) or tf_name == "global_step":
        return "optimizer"
    if re.fullmatch(r"beta[12]_power(_\d+)?", tf_name):
        return "optimizer"
    if tf_name in HYPERPARAMETERS:
        return "hyperparameter"
    if tf_name in SMPL_CONSTANTS:
        return "smpl"
    return "model"


def map_tf_variable(tf_name: str) -> TensorMapping | None:
    """Our tensor for a TF model variable, or None if the name is not HMR's."""
    if m := _RESNET_ROOT.fullmatch(tf_name):
        layout = "conv" if m[1] == "weights" else "copy"
        return TensorMapping(tf_name, f"encoder.conv1.{_PARAM[m[1]]}", ENCODER, layout)
    if m := _RESNET_POSTNORM.fullmatch(tf_name):
        return TensorMapping(tf_name, f"encoder.postnorm.{_BN[m[1]]}", ENCODER, "copy")
    if m := _RESNET_UNIT.fullmatch(tf_name):
        unit = f"encoder.block{int(m[1])}.unit_{int(m[2])}"
        if n := _UNIT_BN.fullmatch(m[3]):
            module = {"preact": "preact", "conv1/BatchNorm": "conv1_bn", "conv2/BatchNorm": "conv2_bn"}[n[1]]
            return TensorMapping(tf_name, f"{unit}.{module}.{_BN[n[2]]}", ENCODER, "copy")
        if n := _UNIT_CONV.fullmatch(m[3]):
            layout = "conv" if n[2] == "weights" else "copy"
            return TensorMapping(tf_name, f"{unit}.{n[1]}.{_PARAM[n[2]]}", ENCODER, layout)
        return None
    if m := _REGRESSOR_FC.fullmatch(tf_name):
        layout = "dense" if m[2] == "weights" else "copy"
        return TensorMapping(tf_name, f"regressor.{m[1]}.{_PARAM[m[2]]}", REGRESSOR, layout)
    if tf_name == "mean_param":
        return TensorMapping(tf_name, "regressor.mean_param", REGRESSOR, "copy")
    if m := _D_POSE_OUT.fullmatch(tf_name):
        layout = "dense" if m[2] == "weights" else "copy"
        return TensorMapping(tf_name, f"discriminator.pose_out.{int(m[1])}.{_PARAM[m[2]]}", DISCRIMINATOR, layout)
    if m := _D_LAYERS.fullmatch(tf_name):
        is_conv = m[1] in ("D_conv1", "D_conv2")
        layout = ("pointwise" if is_conv else "dense") if m[2] == "weights" else "copy"
        return TensorMapping(tf_name, f"discriminator.{_D_TORCH[m[1]]}.{_PARAM[m[2]]}", DISCRIMINATOR, layout)
    return None


def converted_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """Shape of a TF variable after :func:`convert_array`."""
    if layout == "conv" and len(shape) == 4:
        kh, kw, cin, cout = shape
        return (cout, cin, kh, kw)
    if layout == "dense" and len(shape) == 2:
        return (shape[1], shape[0])
    if layout == "pointwise" and len(shape) == 4 and shape[:2] == (1, 1):
        return (shape[3], shape[2])
    if layout == "copy":
        return tuple(shape)
    raise WeightsError(f"a {layout} variable cannot have shape {list(shape)}")


def convert_array(array: np.ndarray, layout: str) -> np.ndarray:
    """TF layout → PyTorch layout (see :class:`TensorMapping`), float32, contiguous."""
    converted_shape(tuple(array.shape), layout)  # validates the rank
    if layout == "conv":
        array = array.transpose(3, 2, 0, 1)
    elif layout == "dense":
        array = array.T
    elif layout == "pointwise":
        array = array[0, 0].T
    return np.ascontiguousarray(array, dtype=np.float32)


def expected_tensors(
    parts: Iterable[str] = PARTS,
    theta_size: int = SMPL_THETA_SIZE,
    d_joints: int = SMPL_D_JOINTS,
    d_betas: int = SMPL_D_BETAS,
) -> dict[str, tuple[int, ...]]:
    """Names and shapes of our tensors that a TF checkpoint must fill, per part.

    Built from the real modules on the ``meta`` device (no memory), so the map
    can never drift from the model. BatchNorm's ``num_batches_tracked`` is not
    a weight (TF has no counterpart) and is left out.
    """
    import torch

    from openhmr.nets.discriminator import FactorizedDiscriminator
    from openhmr.nets.regressor import IEFRegressor
    from openhmr.nets.resnet import ResNet50V2

    modules: dict[str, Callable[[], torch.nn.Module]] = {
        ENCODER: ResNet50V2,
        REGRESSOR: lambda: IEFRegressor(torch.zeros(theta_size)),
        DISCRIMINATOR: lambda: FactorizedDiscriminator(d_joints, d_betas),
    }
    shapes: dict[str, tuple[int, ...]] = {}
    with torch.device("meta"):
        for part in parts:
            for name, tensor in modules[part]().state_dict().items():
                if not name.endswith("num_batches_tracked"):
                    shapes[f"{part}.{name}"] = tuple(tensor.shape)
    return shapes


def _names(names: Iterable[str], limit: int = 3) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def plan_conversion(
    variables: Mapping[str, tuple[int, ...]],
    require: Iterable[str] = PARTS,
) -> list[TensorMapping]:
    """Check a checkpoint's variable table and decide where every variable goes.

    Args:
        variables: TF variable name → shape (the checkpoint index).
        require: parts that must be present. The default (all three) is what
            the released checkpoint holds; a checkpoint with only the
            inference variables needs ``require=("encoder", "regressor")``.
            A part that is present must be complete either way.
    Returns:
        the mappings of all model variables, in name order.
    Raises:
        WeightsError: an unknown variable, a wrong shape, a required part
            missing, or a tensor of ours with no source.
    """
    require = tuple(require)
    unknown = [n for n in variables if variable_role(n) == "model" and map_tf_variable(n) is None]
    if unknown:
        raise WeightsError(f"the checkpoint has variables HMR does not define: {_names(unknown)}")
    plan: list[TensorMapping] = []
    for name in sorted(variables):
        mapping = map_tf_variable(name) if variable_role(name) == "model" else None
        if mapping is not None:
            plan.append(mapping)
    present = {m.part for m in plan}
    missing_parts = [p for p in require if p not in present]
    if missing_parts:
        raise WeightsError(f"the checkpoint has no {' or '.join(missing_parts)} variables")
    theta_size = SMPL_THETA_SIZE
    if "mean_param" in variables:
        theta_size = int(np.prod(variables["mean_param"]))
        if theta_size != SMPL_THETA_SIZE:
            raise WeightsError(
                f"the checkpoint's mean_param has {theta_size} values; HMR with SMPL needs {SMPL_THETA_SIZE}"
            )
    expected = expected_tensors(sorted(present))
    seen: set[str] = set()
    for m in plan:
        if m.torch_name not in expected:
            raise WeightsError(f"checkpoint variable {m.tf_name} has no counterpart in openhmr's model")
        shape = converted_shape(tuple(variables[m.tf_name]), m.layout)
        if shape != expected[m.torch_name]:
            raise WeightsError(
                f"checkpoint variable {m.tf_name} has shape {list(variables[m.tf_name])}, "
                f"which does not fit {m.torch_name} {list(expected[m.torch_name])}"
            )
        seen.add(m.torch_name)
    unfilled = set(expected) - seen
    if unfilled:
        raise WeightsError(f"the checkpoint does not provide {_names(unfilled)}")
    return plan


def smpl_arrays_from_checkpoint(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The TF SMPL layer's constants → openhmr's SMPL npz layout.

    TF stores the blend shapes flattened with column index 3·vertex + coord,
    so a row-major reshape of the transposed matrix recovers (V, 3, K). The
    checkpoint has no faces, so the result has no ``f``.

    Args:
        arrays: ``v_template`` [V,3], ``shapedirs`` [K,3V], ``posedirs``
            [207,3V], ``J_regressor`` [V,24], ``lbs_weights`` [V,24],
            ``cocoplus_regressor`` [V,19].
    Returns:
        ``v_template`` (V,3), ``shapedirs`` (V,3,K), ``posedirs`` (V,3,207),
        ``J_regressor`` (24,V), ``weights`` (V,24), ``cocoplus_regressor``
        (19,V), ``kintree_table`` (2,24), all float64 except the int64 tree.
    """
    missing = [k for k in SMPL_CONSTANTS if k not in arrays]
    if missing:
        raise WeightsError(f"the checkpoint has no SMPL {', '.join(missing)}")
    v_template = np.asarray(arrays["v_template"], np.float64)
    if v_template.ndim != 2 or v_template.shape[1] != 3:
        raise WeightsError(f"the checkpoint's v_template has shape {list(v_template.shape)}, expected [V, 3]")
    n = v_template.shape[0]

    def blend(key: str) -> np.ndarray:
        a = np.asarray(arrays[key], np.float64)
        if a.ndim != 2 or a.shape[1] != 3 * n:
            raise WeightsError(f"the checkpoint's {key} has shape {list(a.shape)}, expected [K, {3 * n}]")
        return np.ascontiguousarray(a.T.reshape(n, 3, a.shape[0]))

    def per_vertex(key: str, cols: int) -> np.ndarray:
        a = np.asarray(arrays[key], np.float64)
        if a.shape != (n, cols):
            raise WeightsError(f"the checkpoint's {key} has shape {list(a.shape)}, expected [{n}, {cols}]")
        return a

    posedirs = blend("posedirs")
    if posedirs.shape[2] != 207:
        raise WeightsError(f"the checkpoint's posedirs has {posedirs.shape[2]} rows, expected 207")
    return {
        "v_template": v_template,
        "shapedirs": blend("shapedirs"),
        "posedirs": posedirs,
        "J_regressor": np.ascontiguousarray(per_vertex("J_regressor", 24).T),
        "weights": per_vertex("lbs_weights", 24),
        "cocoplus_regressor": np.ascontiguousarray(per_vertex("cocoplus_regressor", 19).T),
        "kintree_table": np.stack([np.asarray(SMPL_PARENTS, np.int64), np.arange(24, dtype=np.int64)]),
    }


@dataclass
class ConvertedCheckpoint:
    """Result of :func:`convert_tf_checkpoint`.

    Attributes:
        tensors: our tensor name → float32 array in PyTorch layout.
        parts: parts converted, in :data:`PARTS` order.
        smpl: SMPL arrays (npz layout) if the checkpoint holds them, else None.
        skipped: number of optimiser / hyper-parameter variables skipped.
        classifier: whether slim's ImageNet classifier was there (skipped).
    """

    tensors: dict[str, np.ndarray]
    parts: tuple[str, ...]
    smpl: dict[str, np.ndarray] | None
    skipped: int
    classifier: bool = False


def convert_tf_checkpoint(
    prefix: str | Path,
    require: Iterable[str] = PARTS,
    require_smpl: bool = False,
    progress: bool = True,
) -> ConvertedCheckpoint:
    """Read a TF HMR checkpoint and convert it to PyTorch tensors.

    Args:
        prefix: checkpoint prefix (``…/model.ckpt-667589``; the ``.index``
            and ``.data-*`` files sit beside it).
        require: parts that must be present (see :func:`plan_conversion`).
        require_smpl: read the checkpoint's SMPL arrays (``smpl``), failing
            before reading any data if it holds none; without it they are
            neither read nor checked (``smpl`` is None).
        progress: report progress on stderr while reading (:mod:`openhmr.progress`).
    Raises:
        WeightsError: unreadable, corrupt or incomplete checkpoint.
    """
    from openhmr.io.tf_checkpoint import CheckpointError, TFCheckpoint

    prefix = Path(prefix)
    index = Path(f"{prefix}.index")
    if index.is_dir():
        raise WeightsError(f"{index} is a folder, not a checkpoint index; pass the checkpoint prefix, "
                           "e.g. models/model.ckpt-667589")
    if is_special_file(index):
        raise WeightsError(f"{index} {SPECIAL_FILE}")
    if not index.is_file():
        raise WeightsError(
            f"{prefix}.index does not exist; pass the checkpoint prefix, e.g. models/model.ckpt-667589"
        )
    try:
        ckpt = TFCheckpoint(prefix)
        variables = {name: entry.shape for name, entry in ckpt.entries.items()}
        plan = plan_conversion(variables, require)
        # Weights are floating point; an integer tensor under a weight's name
        # would be cast silently (and rounded past 2²⁴).
        not_float = [m.tf_name for m in plan if ckpt.entries[m.tf_name].dtype not in ("float32", "float64")]
        if not_float:
            name = not_float[0]
            raise WeightsError(f"{prefix}: {name} is {ckpt.entries[name].dtype}, not a float32 weight")
        smpl_names = [n for n in variables if variable_role(n) == "smpl"] if require_smpl else []
        if require_smpl and not smpl_names:
            raise WeightsError(f"{prefix} holds no SMPL arrays")
        tensors: dict[str, np.ndarray] = {}
        for m in track(plan, "reading TF checkpoint", "tensor", enabled=progress):
            tensors[m.torch_name] = convert_array(ckpt.read(m.tf_name), m.layout)
            if np.issubdtype(tensors[m.torch_name].dtype, np.floating) and not np.isfinite(
                    tensors[m.torch_name]).all():
                raise WeightsError(f"{prefix}: {m.tf_name} holds NaN or infinite values")
        smpl = None
        if smpl_names:
            arrays = {n: ckpt.read(n) for n in smpl_names}
            broken = [n for n, a in arrays.items() if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all()]
            if broken:
                raise WeightsError(f"{prefix}: the SMPL array {broken[0]} holds NaN or infinite values")
            smpl = smpl_arrays_from_checkpoint(arrays)
    except CheckpointError as e:
        raise WeightsError(f"cannot read checkpoint {prefix}: {e}") from None
    parts = tuple(p for p in PARTS if any(m.part == p for m in plan))
    skipped = sum(variable_role(n) in ("optimizer", "hyperparameter") for n in variables)
    classifier = any(variable_role(n) == "classifier" for n in variables)
    return ConvertedCheckpoint(tensors=tensors, parts=parts, smpl=smpl, skipped=skipped, classifier=classifier)


# ---------------------------------------------------------------------------
# openhmr weight files (.safetensors with metadata)
# ---------------------------------------------------------------------------


def weights_metadata(
    body_model: str,
    theta_size: int,
    encoder: str,
    num_iterations: int,
    parts: Iterable[str],
    source: str,
    **extra: str,
) -> dict[str, str]:
    """The metadata block of an openhmr weight file (all values are strings)."""
    return {
        "format": WEIGHTS_FORMAT,
        "format_version": WEIGHTS_FORMAT_VERSION,
        "body_model": body_model,
        "theta_size": str(theta_size),
        "encoder": encoder,
        "num_iterations": str(num_iterations),
        "parts": ",".join(parts),
        "source": source,
        **extra,
    }


def write_weights(path: str | Path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> None:
    """Write tensors and metadata to a ``.safetensors`` file (atomically)."""
    from safetensors.numpy import save

    from openhmr.io.output_paths import replacing

    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    # Serialise in memory and write with Python's open(): safetensors' own
    # save_file creates files readable by the owner only.
    with replacing(Path(path)) as tmp:
        tmp.write_bytes(save(arrays, metadata=dict(metadata)))


def require_weights_file(path: str | Path) -> Path:
    """``path`` as a Path if it is a file; else WeightsError, saying whether it is
    missing or a folder."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"weights file {path} is a folder; give the .safetensors file in it")
    if not path.is_file():
        raise WeightsError(f"weights file {path} {SPECIAL_FILE}" if is_special_file(path)
                           else f"weights file not found: {path}")
    return path


def weights_made_for(path: str | Path) -> str | None:
    """The body model an openhmr weight file names in its metadata ("smpl",
    "anny", ...), read from the header alone; None where the file cannot say
    (missing, not safetensors, not openhmr's: reading it reports why)."""
    try:
        with Path(path).open("rb") as f:
            head = f.read(8)
            header_len = int.from_bytes(head, "little") if len(head) == 8 else -1
            header = json.loads(f.read(header_len)) if 0 < header_len < 100_000_000 else None
    except (OSError, ValueError, RecursionError):
        return None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get("format") != WEIGHTS_FORMAT:
        return None
    made_for = metadata.get("body_model")
    return made_for if isinstance(made_for, str) else None


def read_weights(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read an openhmr weight file: (tensors, metadata).

    Raises:
        WeightsError: the file is missing, not a safetensors file, or not an
            openhmr HMR weight file.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"weight file {path} does not exist; make one with `openhmr convert-tf` or HMR.save_pretrained"
        )
    try:
        with path.open("rb") as f:
            head = f.read(8)
            header_len = int.from_bytes(head, "little") if len(head) == 8 else -1
            header = json.loads(f.read(header_len)) if 0 < header_len < 100_000_000 else None
        if not isinstance(header, dict):
            raise ValueError("no safetensors header")
        metadata = header.get("__metadata__") or {}
        if any(isinstance(v, dict) and v.get("dtype") == "BF16" for v in header.values()):
            # numpy has no bfloat16: a half-size copy is read through torch, widened to float32
            import torch
            from safetensors.torch import load_file as load_torch

            tensors = {k: v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
                       for k, v in load_torch(str(path)).items()}
        else:
            tensors = load_file(str(path))
    except (SafetensorError, ValueError, OSError, RecursionError) as e:  # ValueError: JSON, UTF-8
        raise WeightsError(f"{path} is not a readable .safetensors weight file "
                           f"({e or type(e).__name__})") from None
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{path} is a safetensors file but not openhmr HMR weights (no '{WEIGHTS_FORMAT}' metadata)")
    return tensors, metadata
