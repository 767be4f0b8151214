"""HMR's mean parameters: the mean pose and shape its training starts Θ₀ from.

The original reads ``neutral_smpl_mean_params.h5`` (written by deepdish,
shipped with the released model, beside the SMPL file) with two arrays:
``pose`` (72,) axis-angle and ``shape`` (10,) (HMR_REFERENCE §3.2). The same
two arrays in an ``.npz`` are read too. ``openhmr.nets.mean_theta_from_params``
turns them into Θ₀. Released weights carry their learned Θ₀ (``mean_param``)
instead; this file matters only for a training run started from scratch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from openhmr.errors import NPZ_READ_ERRORS, WeightsError
from openhmr.io.npz import check_fits_memory, open_npz


def _read_h5(path: Path) -> dict[str, Any]:
    try:
        import h5py
    except ImportError:
        raise WeightsError(f"reading {path.name} (HDF5) needs h5py: pip install h5py") from None
    try:
        with h5py.File(path, "r") as f:
            return {key: np.asarray(f[key][()]) for key in ("pose", "shape") if key in f}
    except (OSError, ValueError, TypeError) as e:
        raise WeightsError(f"{path} is not a readable HDF5 file ({e})") from None


def load_mean_params(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The mean pose (3·J,) and shape (k,) of an ``.h5`` (HMR's) or ``.npz`` file, float64.

    Raises:
        WeightsError: a missing or unreadable file, a missing array, or
            values that are not finite numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"mean parameters file {path} does not exist")
    if path.suffix.lower() in (".h5", ".hdf5"):
        arrays = _read_h5(path)
    else:
        try:
            with open_npz(path) as data:
                check_fits_memory(data, ("pose", "shape"))
                arrays = {key: np.asarray(data[key]) for key in ("pose", "shape") if key in data.files}
        except NPZ_READ_ERRORS as e:
            raise WeightsError(f"{path} is not a readable .npz or .h5 file ({e})") from None
    missing = [key for key in ("pose", "shape") if key not in arrays]
    if missing:
        raise WeightsError(f"{path} lacks {' and '.join(missing)} (HMR's mean file holds pose (72) and shape (10))")
    out = []
    for key in ("pose", "shape"):
        value = arrays[key]
        if not np.issubdtype(value.dtype, np.number) or not np.isfinite(value).all():
            raise WeightsError(f"{path}: {key} must hold finite numbers")
        out.append(value.astype(np.float64).reshape(-1))
    return out[0], out[1]
