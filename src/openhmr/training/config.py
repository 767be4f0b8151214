"""The training configuration: one dataclass, saved as YAML with every run.

Defaults are the paper's run (``do_train.sh``, HMR_REFERENCE §9), not the
original ``config.py`` defaults (quirk Q6). ``configs/hmr_paper.yaml`` spells
them out; ``configs/cpu_smoke.yaml`` is a minutes-long CPU run on synthetic data.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from openhmr.errors import SPECIAL_FILE, InputError, is_special_file


class ConfigError(InputError):
    """A training configuration file or override is invalid."""


def _mistyped_sizes(sizes: dict[str, int], datasets: list[str]) -> dict[str, str]:
    """The ``dataset_sizes`` names that look like one of the run's datasets
    without being it ("H36M", "lspp" for "h36m", "lsp"), each with that
    dataset: such a size would leave the dataset's own count in place unseen.
    A name unlike any (a set this run does not read, as the paper's sizes for
    all six) is not one."""
    import difflib

    out = {}
    for name in sizes:
        if name in datasets:
            continue
        close = [d for d in datasets if d.lower() == name.lower()] or difflib.get_close_matches(
            name.lower(), datasets, n=1, cutoff=0.8)
        if close:
            out[name] = close[0]
    return out


@dataclass
class TrainConfig:
    """Everything a training run depends on.

    Data:
        data: ``"shards"`` (converted datasets, ``openhmr data``) or
            ``"synthetic"`` (bodies rendered from the body model on the fly,
            for smoke tests; no files needed).
        data_dir: folder holding one shard folder per dataset.
        datasets_2d / datasets_3d: dataset folder names under ``data_dir``
            for the 2D-only and the 3D-labelled queue.
        fraction_3d: probability that a batch slot is drawn from the 3D
            queue; 0.5 reproduces the original's paired enqueue (Q3).
        mocap_dir, mocap_datasets: the adversarial prior's real samples.
        dataset_sizes: optional {name: count} overriding the counts read from
            the shard manifests, for the nominal epoch (§9); only the datasets
            the run reads count (fraction_3d 0 or 1 reads one queue's; with
            use_3d_label false, both lists'); a name like one of the run's
            datasets but not it (another case, a typo) is refused.
        synthetic_samples: size of the synthetic data set.
        num_workers: DataLoader workers per queue and process: a run
            reading both the 3D and the 2D queue has twice as many. Each
            hands over 16 samples at a time (one shared-memory transfer per
            field and chunk), 64 prefetched.
        trans_max, scale_min, scale_max, flip: augmentation (§10.4).
        hmr_flip_offset, hmr_center_flipped_joints3d: the original's two flip
            quirks (mirror x as 223 − x; mean-centre flipped 3D joints), off.
        color_jitter, rotation_max_deg, rotation_prob, occlusion_prob,
            occlusion_size: augmentations the original lacks, off by default
            (:class:`~openhmr.data.augment.AugmentConfig` says what each does).
    Model:
        body_model: ``"smpl"`` (needs ``smpl_path``), ``"anny"``, or
            ``"synthetic_smpl"`` (openhmr's licence-free stand-in, tests only).
        encoder: ``"resnet50_v2"`` (HMR's), ``"resnet50_v1"`` or ``"tiny"``.
        encoder_weights: optional safetensors state dict for the encoder
            (ImageNet pretraining, as the original started from).
        mean_params: optional HMR mean-parameters file (its
            ``neutral_smpl_mean_params.h5``, or an ``.npz`` with ``pose`` and
            ``shape``): Θ₀ starts from its mean pose and shape, as the
            original's; without it, from the body's rest pose and zero shape.
        num_iterations: IEF iterations T (3).
        regressor_hidden, discriminator_hidden: widths of the regressor's fc1/fc2
            and of D's all-joints MLP (1024 both, the original); smaller
            values only for quick CPU runs.
        regressor_dropout: drop probability after fc1 and fc2 (0.5, slim's
            keep_prob 0.5); 0 only for overfitting checks.
        image_size: network input size (224).
    Optimisation:
        batch_size: images per process and step (64); with N DDP processes
            the effective batch is N·batch_size.
        e_lr, d_lr, adam_betas, adam_eps: Adam (TF defaults, paper's rates).
        tf_adam: use TF's ε placement (exact) instead of ``torch.optim.Adam``.
        weight_decay: 0, as the released model was trained (Q1); a non-zero
            value adds a coupled L2 gradient (g ← g + λ·w, never AdamW) to the
            weights the original's dead regularisers named: the encoder's
            convolutions and the discriminator's convolutions and fully
            connected layers (not biases, batch norm, the regressor or Θ₀).
        e_loss_weight, e_3d_weight, d_loss_weight: loss weights (60, 60, 1).
        encoder_only: no adversarial prior.  use_3d_label: use 3D losses;
            false, as the original's ``get_loader``, batches are drawn from
            one queue over datasets_2d and datasets_3d, each in proportion to
            its size (``fraction_3d`` is then not used).
        epochs: nominal epochs (Σ dataset sizes / batch steps each), or
            max_steps when set.
        sync_bn: SyncBatchNorm across DDP processes (off: each process
            normalises over its own batch_size images, as the original's
            single GPU did over its 64).
    Run:
        seed, deterministic: seeding is always done (Q21 fixed); deterministic
            additionally asks torch for deterministic kernels.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        bf16, channels_last: bf16 autocast and NHWC for the encoder on CUDA.
        checkpoint_every, keep_checkpoints, log_every, image_log_every: steps.
        tensorboard: write TensorBoard events (skipped if not installed).
    """

    # data
    data: str = "shards"
    data_dir: str | None = None
    datasets_2d: list[str] = field(default_factory=lambda: ["lsp", "lsp_ext", "mpii", "coco"])
    datasets_3d: list[str] = field(default_factory=lambda: ["h36m", "mpi_inf_3dhp"])
    fraction_3d: float = 0.5
    mocap_dir: str | None = None
    mocap_datasets: list[str] = field(default_factory=lambda: ["CMU", "H3.6", "jointLim"])
    dataset_sizes: dict[str, int] = field(default_factory=dict)
    synthetic_samples: int = 64
    num_workers: int = 4
    trans_max: float = 20.0
    scale_min: float = 0.8
    scale_max: float = 1.23
    flip: bool = True
    hmr_flip_offset: bool = False
    hmr_center_flipped_joints3d: bool = False
    color_jitter: float = 0.0
    rotation_max_deg: float = 0.0
    rotation_prob: float = 0.6
    occlusion_prob: float = 0.0
    occlusion_size: tuple[float, float] = (0.1, 0.4)
    # model
    body_model: str = "smpl"
    smpl_path: str | None = None
    encoder: str = "resnet50_v2"
    encoder_weights: str | None = None
    mean_params: str | None = None
    num_iterations: int = 3
    regressor_hidden: int = 1024
    discriminator_hidden: int = 1024
    regressor_dropout: float = 0.5
    image_size: int = 224
    # optimisation
    batch_size: int = 64
    e_lr: float = 1e-5
    d_lr: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    tf_adam: bool = True
    weight_decay: float = 0.0
    e_loss_weight: float = 60.0
    e_3d_weight: float = 60.0
    d_loss_weight: float = 1.0
    encoder_only: bool = False
    use_3d_label: bool = True
    epochs: float = 75.0
    max_steps: int | None = None
    sync_bn: bool = False
    # run
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    bf16: bool = True
    channels_last: bool = True
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    log_every: int = 100
    image_log_every: int = 1000
    tensorboard: bool = True

    def __post_init__(self) -> None:
        self.adam_betas = tuple(float(b) for b in self.adam_betas)  # type: ignore[assignment]
        self.occlusion_size = tuple(float(b) for b in self.occlusion_size)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values that cannot work."""
        for f in dataclasses.fields(self):  # first: NaN fails every comparison below, inf some
            value = getattr(self, f.name)
            numbers = value if isinstance(value, tuple) else (value,)
            if any(isinstance(x, float) and not math.isfinite(x) for x in numbers):
                raise ConfigError(f"{f.name} must be finite, got {value}")
        checks = [
            (self.data in ("shards", "synthetic"), f"data must be 'shards' or 'synthetic', got {self.data!r}"),
            (self.body_model in ("smpl", "anny", "synthetic_smpl"),
             f"body_model must be 'smpl', 'anny' or 'synthetic_smpl', got {self.body_model!r}"),
            (self.encoder in ("resnet50_v2", "resnet50_v1", "tiny"),
             f"encoder must be 'resnet50_v2', 'resnet50_v1' or 'tiny', got {self.encoder!r}"),
            (self.batch_size >= 2, "batch_size must be at least 2 (batch-statistics BN)"),
            (self.num_iterations >= 1, "num_iterations must be at least 1"),
            (self.regressor_hidden >= 1 and self.discriminator_hidden >= 1, "hidden widths must be positive"),
            (0.0 <= self.regressor_dropout < 1.0, "regressor_dropout must lie in [0, 1)"),
            (0.0 <= self.fraction_3d <= 1.0, "fraction_3d must lie in [0, 1]"),
            (len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas), "adam_betas must be two numbers in [0, 1)"),
            (self.e_lr > 0 and self.d_lr > 0 and self.adam_eps >= 0, "learning rates must be positive and adam_eps non-negative"),
            (self.weight_decay >= 0, "weight_decay must be non-negative"),
            (min(self.e_loss_weight, self.e_3d_weight, self.d_loss_weight) >= 0,
             "e_loss_weight, e_3d_weight and d_loss_weight must be non-negative"),
            (0 <= self.seed < 2 ** 63, "seed must be an integer in [0, 2⁶³)"),
            (self.synthetic_samples >= 2, "synthetic_samples must be at least 2"),
            (self.max_steps is None or self.max_steps > 0, "max_steps must be positive"),
            (0 < self.epochs < float("inf"), "epochs must be a positive, finite number"),
            (self.num_workers >= 0, "num_workers must be 0 (load in the training process) or more"),
            (self.trans_max >= 0 and float(self.trans_max).is_integer(),
             "trans_max must be a whole, non-negative number of pixels"),
            (0 < self.scale_min <= self.scale_max, "scale_min and scale_max must satisfy 0 < scale_min <= scale_max"),
            (0 <= self.color_jitter < 1, "color_jitter must lie in [0, 1)"),
            (0 <= self.rotation_max_deg <= 180, "rotation_max_deg must lie in [0, 180]"),
            (0 <= self.rotation_prob <= 1 and 0 <= self.occlusion_prob <= 1,
             "rotation_prob and occlusion_prob must lie in [0, 1]"),
            (len(self.occlusion_size) == 2 and 0 < self.occlusion_size[0] <= self.occlusion_size[1] <= 1,
             "occlusion_size must be two fractions of the crop, 0 < min <= max <= 1"),
            (min(self.checkpoint_every, self.log_every, self.image_log_every, self.keep_checkpoints) > 0,
             "checkpoint_every, keep_checkpoints, log_every and image_log_every must be positive"),
            (self.device in ("auto", "cpu", "cuda"), f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}"),
            (self.image_size >= 16, "image_size must be at least 16"),
            # A size replaces a manifest's count in the nominal epoch: 0 or less would shorten the run unseen.
            (all(n >= 1 for n in self.dataset_sizes.values()),
             f"dataset_sizes must be at least 1 each, got {self.dataset_sizes}"),
            # the run's length, epochs × samples, is reckoned in floats
            (all(n < 2**63 for n in self.dataset_sizes.values()),
             f"dataset_sizes must be below 2**63 each, got {self.dataset_sizes}"),
        ]
        for name in ("datasets_2d", "datasets_3d", "mocap_datasets"):
            names = getattr(self, name)
            repeated = sorted({n for n in names if names.count(n) > 1})
            # read once per mention: a repeat would double the set's share of every batch unsaid
            checks.append((not repeated, f"{name} names {', '.join(repeated)} more than once"))
        mistyped = _mistyped_sizes(self.dataset_sizes, self.datasets_2d + self.datasets_3d)
        if mistyped:
            checks.append((False, "dataset_sizes names " + ", ".join(f"{k!r} (meant {v!r}?)" for k, v in mistyped.items())
                           + "; a size counts only under its dataset's name in datasets_2d or datasets_3d"))
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        d["occlusion_size"] = list(self.occlusion_size)
        return d

    def save(self, path: str | Path) -> None:
        """Write the configuration as YAML (atomically)."""
        from openhmr.io.output_paths import replacing

        yaml = _yaml()
        with replacing(Path(path)) as tmp:
            tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(values) - known))  # YAML keys may be numbers or booleans
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
        try:
            return cls(**{k: _coerce(k, v) for k, v in values.items()})
        except (TypeError, ValueError) as e:
            raise ConfigError(f"invalid training configuration: {e}") from None

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
        """Read a YAML file and apply ``key=value`` overrides (values parsed as YAML)."""
        yaml = _yaml()
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"training config {path} is a folder; give its .yaml file")
        if not path.is_file():
            raise ConfigError(f"training config {path} {SPECIAL_FILE}" if is_special_file(path)
                              else f"training config {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text())
            if values is None:  # an empty file (or comments alone): every default
                values = {}
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not a text file, so not a YAML config") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
        except RecursionError:
            raise ConfigError(f"{path} is nested deeper than a config can be") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path} must hold a mapping of option: value")
        values.update(parse_overrides(overrides or []))
        return cls.from_dict(values)


def _coerce(name: str, value: Any) -> Any:
    """A value read from YAML (or an override) → the field's type, or
    ConfigError naming the option: ``batch_size=2.5``, ``flip=3`` or
    ``num_workers=[1]`` would otherwise pass into the run and fail far from
    their cause, or not at all. Numbers YAML read as text (``1e-5`` is a
    string in YAML 1.1) are numbers; one name given for a list is a list of one."""
    kind = _FIELD_TYPES.get(name, "")
    base = kind.removesuffix(" | None")
    if value is None:
        if kind and base == kind:
            raise ConfigError(f"{name} needs a value ({kind}), got none")
        return None
    if base in ("int", "float"):
        return _number(name, value, base)
    if base == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if base == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be text, got {value!r}")
        return value
    if base == "list[str]":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
            raise ConfigError(f"{name} must be a list of names, e.g. [lsp, coco], got {value!r}")
        return list(items)
    if base == "dict[str, int]":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{name} must map names to whole numbers, e.g. {{lsp: 1000}}, got {value!r}")
        return {k: _number(f"{name}[{k}]", v, "int") for k, v in value.items()}
    if base == "tuple[float, float]":
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ConfigError(f"{name} must be two numbers, e.g. [0.9, 0.999], got {value!r}")
        return tuple(_number(name, v, "float") for v in value)
    return value


def _number(name: str, value: Any, kind: str) -> int | float:
    """``value`` (a number, or text of one) as an int or float, else ConfigError."""
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if kind == "int":
        if isinstance(number, float) and not number.is_integer():
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        return int(number)
    try:
        return float(number)
    except OverflowError:  # a whole number of hundreds of digits
        raise ConfigError(f"{name} must be a finite number, got {value!r}") from None


def _yaml() -> Any:
    """PyYAML (the train extra), or one line saying how to install it."""
    from openhmr.errors import require_module

    return require_module("yaml", "training (its YAML configs)", "pip install 'openhmr[train]'")


_FIELD_TYPES = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["batch_size=8", "datasets_2d=[lsp]"]`` → ``{"batch_size": 8, "datasets_2d": ["lsp"]}``."""
    yaml = _yaml()
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value")
        try:
            out[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"cannot parse the value of override {item!r}") from None
    return out
