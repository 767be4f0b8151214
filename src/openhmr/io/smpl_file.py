"""Safe loading of SMPL model files, without chumpy and without plain pickle.

Official SMPL ``.pkl`` files (v1.0 with 10 betas, v1.1 with 300; male, female
and neutral) and HMR's ``neutral_smpl_with_cocoplus_reg.pkl`` are Python-2
pickles holding numpy arrays, scipy sparse matrices and ``chumpy.ch.Ch``
objects. A pickle can run arbitrary code, so they are read by
:class:`RestrictedUnpickler`, which resolves only the handful of classes such
files contain, to inert stand-ins, and refuses everything else with
:class:`~openhmr.errors.SMPLFileError` naming the class. Neither chumpy nor
scipy needs to be installed.

The canonical in-memory form is a dict of numpy arrays (:data:`SMPL_KEYS`),
which ``openhmr convert-smpl IN.pkl OUT.npz`` writes to an ``.npz``.
"""

from __future__ import annotations

import functools
import io
import pickle
import types
from pathlib import Path
from typing import Any

import numpy as np

from openhmr.errors import NPZ_READ_ERRORS, SPECIAL_FILE, SMPLFileError, is_special_file
from openhmr.io.npz import check_fits_memory, open_npz

# SMPL's kinematic tree (parent of each of the 24 joints; -1 for the root).
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

# name -> (description, required)
SMPL_KEYS: dict[str, tuple[str, bool]] = {
    "v_template": ("(V, 3) rest-pose template vertices, metres", True),
    "shapedirs": ("(V, 3, K) shape blend shapes", True),
    "posedirs": ("(V, 3, 207) pose blend shapes", True),
    "J_regressor": ("(24, V) joint regressor", True),
    "weights": ("(V, 24) skinning weights", True),
    "kintree_table": ("(2, 24) kinematic tree; row 0 holds the parents", False),
    "f": ("(F, 3) triangle faces", False),
    "cocoplus_regressor": ("(19, V) HMR's cocoplus keypoint regressor", False),
}
# Extra keypoint regressors may be stored as "regressor_<set name>" (K, V): a set
# openhmr knows (openhmr.body.keypoints), its K keypoints in openhmr's order.
REGRESSOR_PREFIX = "regressor_"


#: The keypoint sets an SMPL model makes from its own arrays, which no
#: ``regressor_<set>`` may give again.
BUILT_IN_SETS = {"smpl24": "its joints, from J_regressor", "cocoplus19": "from cocoplus_regressor",
                 "lsp14": "the first 14 rows of cocoplus_regressor"}


def check_extra_regressor(key: str, shape: tuple[int, ...], vertices: int, where: str) -> None:
    """SMPLFileError unless ``key`` ("regressor_<set>") names a keypoint set
    openhmr knows and ``shape`` is (that set's K, ``vertices``); ``where``
    (a file's name) starts the message."""
    from openhmr.body.keypoints import KEYPOINT_SETS  # here: openhmr.body imports this module

    name = key[len(REGRESSOR_PREFIX):]
    if name not in KEYPOINT_SETS:  # its keypoints would have no names, order or flip
        raise SMPLFileError(f"{where}: {key} names no keypoint set openhmr knows; the sets are "
                            f"{', '.join(KEYPOINT_SETS)}")
    if name in BUILT_IN_SETS:  # two sources of one set: one would silently replace the other
        raise SMPLFileError(f"{where}: {key} names a set SMPL makes itself ({BUILT_IN_SETS[name]})")
    rows = len(KEYPOINT_SETS[name])
    if tuple(shape) != (rows, vertices):
        raise SMPLFileError(f"{where}: {key} has shape {tuple(shape)}, expected ({rows}, {vertices}): a row "
                            f"of {vertices} vertex weights per keypoint of {name}, in openhmr's order")


class _Inert:
    """Stand-in for an allowed class: records constructor args and state only."""

    # Class-level defaults: protocol-2 pickles create instances with
    # cls.__new__ and never call __init__.
    args: tuple = ()
    state: Any = None

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _ChumpyCh(_Inert):
    """A ``chumpy.ch.Ch``: its value is the array in state['x']."""


class _SparseMatrix(_Inert):
    """A scipy sparse matrix: its value is rebuilt from its state."""

    fmt = ""


def _sparse_class(fmt: str) -> type:
    return type(f"_Sparse_{fmt}", (_SparseMatrix,), {"fmt": fmt})


def _numpy_reconstruct() -> Any:
    return np.ndarray.__reduce__(np.zeros(1))[0]


def _numpy_scalar() -> Any:
    return np.float64(0).__reduce__()[0]


def _safe_reconstructor(cls: type, base: type, state: Any) -> Any:
    # copyreg._reconstructor(cls, object, None) is how protocol-0/1 pickles
    # (Python 2's default) create class instances; only our stand-ins pass.
    if not (isinstance(cls, type) and issubclass(cls, _Inert)) or base is not object:
        raise SMPLFileError(f"refusing to reconstruct {cls!r} from a SMPL file")
    return cls()


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise SMPLFileError("refusing a non-latin1 _codecs.encode call in a SMPL file")
    return text.encode("latin1")


def _safe_frombuffer(buffer: Any, dtype: Any, shape: tuple[int, ...], order: str) -> np.ndarray:
    """numpy's protocol-5 array reconstructor (``numeric._frombuffer``), for
    plain numeric data only: an object array could run code."""
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise SMPLFileError("refusing an object array in a SMPL file")
    if order not in ("C", "F"):
        raise SMPLFileError(f"refusing an array of memory order {order!r} in a SMPL file")
    flat = np.frombuffer(buffer, dtype=dtype)
    return (flat.reshape(shape, order="F") if order == "F" else flat.reshape(shape)).copy()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that allows only numpy arrays, scipy sparse matrices and chumpy arrays."""

    _SPARSE_MODULES = {"scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr",
                       "scipy.sparse._csr", "scipy.sparse.coo", "scipy.sparse._coo",
                       "scipy.sparse._arrays"}

    def find_class(self, module: str, name: str) -> Any:
        allowed: dict[tuple[str, str], Any] = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
            ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
            ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,  # protocol 5
            ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
            ("numpy.core.multiarray", "scalar"): _numpy_scalar(),
            ("numpy._core.multiarray", "scalar"): _numpy_scalar(),
            ("copy_reg", "_reconstructor"): _safe_reconstructor,
            ("copyreg", "_reconstructor"): _safe_reconstructor,
            ("__builtin__", "object"): object,
            ("builtins", "object"): object,
            ("__builtin__", "set"): set,
            ("builtins", "set"): set,
            ("chumpy.ch", "Ch"): _ChumpyCh,
            ("_codecs", "encode"): _latin1_bytes,
        }
        if (module, name) in allowed:
            found = allowed[(module, name)]
            # openhmr's own functions go out as a new callable each time: a
            # pickle's BUILD may set attributes on what it gets, and the
            # module's functions must not take them for the whole process.
            return functools.partial(found) if isinstance(found, types.FunctionType) else found
        if module in self._SPARSE_MODULES and name in (
            "csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"
        ):
            return _sparse_class(name[:3])
        raise SMPLFileError(
            f"refusing to load {module}.{name}: a SMPL file holds only numpy, "
            "scipy.sparse and chumpy arrays"
        )


#: The most values a SMPL file's sparse matrix may hold dense (SMPL's, its
#: 24 × 6890 joint regressor, holds 165,360): a larger shape is a damaged or
#: hostile file, not one to allocate terabytes for.
MAX_SPARSE_VALUES = 100_000_000


def _sparse_to_dense(obj: _SparseMatrix) -> np.ndarray:
    state = obj.state if isinstance(obj.state, dict) else {}
    shape = state.get("_shape", state.get("shape"))
    try:
        if shape is None:
            raise KeyError("no shape")
        rows, cols = (int(v) for v in shape)
        if not (0 < rows and 0 < cols and rows * cols <= MAX_SPARSE_VALUES):
            raise ValueError(f"shape {rows}×{cols}")
        data = np.asarray(state["data"], dtype=np.float64)
        if obj.fmt == "coo":
            r = np.asarray(state.get("row", state.get("coords", [None, None])[0]))
            c = np.asarray(state.get("col", state.get("coords", [None, None])[1]))
        else:
            indices = np.asarray(state["indices"], dtype=np.int64)
            indptr = np.asarray(state["indptr"], dtype=np.int64)
            counts = np.diff(indptr)
            major = np.repeat(np.arange(len(counts)), counts)
            r, c = (indices, major) if obj.fmt == "csc" else (major, indices)
        dense = np.zeros((rows, cols), dtype=np.float64)
        np.add.at(dense, (r, c), data)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise SMPLFileError(f"a sparse {obj.fmt} matrix in the SMPL file is malformed ({e})") from None
    return dense


def _to_array(obj: Any, key: str) -> np.ndarray:
    seen: set[int] = set()
    while isinstance(obj, _ChumpyCh):  # a chumpy array holds its values in "x", maybe another Ch
        if id(obj) in seen:  # a pickle's memo can make an object hold itself
            raise SMPLFileError(f"array {key!r} is a chumpy array that refers to itself")
        seen.add(id(obj))
        state = obj.state if isinstance(obj.state, dict) else {}
        if "x" not in state:
            raise SMPLFileError(f"array {key!r} is a chumpy expression, not a plain chumpy array")
        obj = state["x"]
    if isinstance(obj, _SparseMatrix):
        return _sparse_to_dense(obj)
    if isinstance(obj, _Inert):
        raise SMPLFileError(f"array {key!r} has an unexpected type")
    try:
        return np.asarray(obj)
    except Exception as e:  # noqa: BLE001 - any conversion failure is a file error
        raise SMPLFileError(f"array {key!r} cannot be read as an array ({e})") from None


def _normalise(raw: dict[str, Any], path: Path) -> dict[str, np.ndarray]:
    """Keep the arrays openhmr uses, densified and checked for shape."""
    missing = [k for k, (_, req) in SMPL_KEYS.items() if req and k not in raw]
    if missing:
        raise SMPLFileError(
            f"{path.name} is not a SMPL model file: it has no {', '.join(missing)}"
        )
    arrays: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        if isinstance(key, str) and (key in SMPL_KEYS or key.startswith(REGRESSOR_PREFIX)):
            arrays[key] = _to_array(value, key)
            if not (np.issubdtype(arrays[key].dtype, np.number) or arrays[key].dtype == np.bool_):
                raise SMPLFileError(f"{path.name}: array {key!r} holds {arrays[key].dtype}, not numbers")
    v = arrays["v_template"]
    if v.ndim != 2 or v.shape[1] != 3:
        raise SMPLFileError(f"{path.name}: v_template has shape {v.shape}, expected (V, 3)")
    n = v.shape[0]
    expect = {
        "shapedirs": lambda a: a.ndim == 3 and a.shape[:2] == (n, 3),
        "posedirs": lambda a: a.shape == (n, 3, 207),
        "J_regressor": lambda a: a.shape == (24, n),
        "weights": lambda a: a.shape == (n, 24),
        "kintree_table": lambda a: a.shape == (2, 24),
        "f": lambda a: a.ndim == 2 and a.shape[1] == 3,
        "cocoplus_regressor": lambda a: a.shape == (19, n),
    }
    for key, ok in expect.items():
        if key in arrays and not ok(arrays[key]):
            raise SMPLFileError(
                f"{path.name}: {key} has shape {arrays[key].shape}, expected {SMPL_KEYS[key][0]}"
            )
    for key, array in arrays.items():
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise SMPLFileError(f"{path.name}: {key} holds NaN or infinite values")
    if "f" in arrays and arrays["f"].size:
        # Faces index the vertices from 0: a mesh, its pictures and its files all rely on it.
        faces = arrays["f"]
        if not (np.issubdtype(faces.dtype, np.integer) or np.array_equal(faces, np.round(faces))):
            raise SMPLFileError(f"{path.name}: f (the faces) holds {faces.dtype} values that are not vertex numbers")
        low, high = int(faces.min()), int(faces.max())
        if low < 0 or high >= n:
            hint = " (numbered from 1, as in an OBJ file?)" if low >= 1 and high == n else ""
            raise SMPLFileError(f"{path.name}: f (the faces) numbers vertices {low}..{high}, "
                                f"but there are {n} vertices, 0..{n - 1}{hint}")
    for key in arrays:
        if key.startswith(REGRESSOR_PREFIX):
            check_extra_regressor(key, arrays[key].shape, n, path.name)
    if "kintree_table" in arrays:
        parents = arrays["kintree_table"][0].astype(np.int64)
        parents[0] = -1  # stored as uint32 4294967295 in the official files
        if tuple(parents.tolist()) != SMPL_PARENTS:
            raise SMPLFileError(f"{path.name}: its kinematic tree is not SMPL's")
        arrays["kintree_table"] = np.stack([parents, np.arange(24)])
    return arrays


def load_smpl_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read a SMPL model from ``.pkl`` (official or HMR) or openhmr ``.npz``.

    Returns:
        dict of numpy arrays with the keys of :data:`SMPL_KEYS` (optional ones
        only if present) and any ``regressor_<set>`` arrays.
    Raises:
        SMPLFileError: missing, truncated, unsafe or incomplete file.
    """
    path = Path(path)
    if path.is_dir():
        raise SMPLFileError(f"SMPL model file {path} is a folder; give the model file in it "
                            "(e.g. SMPL_NEUTRAL.pkl or a converted .npz)")
    if is_special_file(path):
        raise SMPLFileError(f"SMPL model file {path} {SPECIAL_FILE}")
    if not path.is_file():
        raise SMPLFileError(
            f"SMPL model file {path} does not exist; download SMPL from https://smpl.is.tue.mpg.de "
            "(registration required) and pass the .pkl or a converted .npz"
        )
    data = path.read_bytes()
    if path.suffix == ".npz" or data[:4] == b"PK\x03\x04":
        try:
            with open_npz(io.BytesIO(data)) as npz:
                check_fits_memory(npz, npz.files)
                raw = {k: npz[k] for k in npz.files}
        except NPZ_READ_ERRORS as e:
            raise SMPLFileError(f"{path.name} is not a readable .npz file ({e})") from None
        return _normalise(raw, path)
    try:
        raw = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except SMPLFileError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError,
            AttributeError, KeyError, MemoryError, OverflowError, UnicodeDecodeError) as e:
        raise SMPLFileError(
            f"{path.name} is truncated or corrupt and cannot be read as a SMPL pickle ({type(e).__name__})"
        ) from None
    if not isinstance(raw, dict):
        raise SMPLFileError(f"{path.name} does not hold a SMPL model dictionary")
    return _normalise(raw, path)


def save_smpl_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write SMPL arrays to an ``.npz`` that :func:`load_smpl_arrays` reads back."""
    from openhmr.io.npz import save_npz
    from openhmr.io.output_paths import replacing

    with replacing(Path(path)) as tmp:
        save_npz(tmp, {k: np.asarray(v) for k, v in arrays.items()})
