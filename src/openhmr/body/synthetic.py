"""A synthetic, licence-free model in the SMPL file format, for tests and demos.

The real SMPL arrays are licence-gated, so tests build a stand-in with the
real array names, shapes, dtypes and kinematic tree, and plausible contents:

* the mesh is a UV sphere with 82 rings of 84 segments plus two poles, which
  has exactly SMPL's 6890 vertices and 13776 faces, shrink-wrapped onto a
  union of capsules along a made-up T-pose skeleton (~1.7 m tall, y up,
  facing +z, +x = the body's left, as SMPL);
* skinning weights fall off with the distance to each bone (top 4, summing to
  one); the joint and keypoint regressors are normalised Gaussian windows of
  vertices around target points, so they are sparse and convex like SMPL's;
* shape blend shapes are smooth fields (girth, height, and random bumps);
  pose blend shapes are small random values.

``symmetric=True`` makes every array mirror-symmetric under x → −x (with the
vertex permutation returned as ``mirror_vertex_index``) and sets the pose
blend shapes to zero, so a mirrored pose gives exactly the mirrored mesh.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from openhmr.body.keypoints import COCOPLUS19, SMPL24
from openhmr.errors import NPZ_READ_ERRORS
from openhmr.io.cache import cache_dir
from openhmr.io.npz import open_npz, save_npz
from openhmr.io.smpl_file import SMPL_PARENTS, save_smpl_npz

SMPL24_FLIP = SMPL24.flip_permutation

RINGS, SEGMENTS = 82, 84  # 2 + 82·84 = 6890 vertices, 2·84·82 = 13776 faces

# Rest joints (metres, y up, +x = body left), SMPL joint order.
_JOINTS = np.array([
    [0.00, 0.95, 0.00],   # pelvis
    [0.09, 0.88, 0.00], [-0.09, 0.88, 0.00],   # hips
    [0.00, 1.05, 0.00],   # spine1
    [0.10, 0.50, 0.01], [-0.10, 0.50, 0.01],   # knees
    [0.00, 1.17, 0.00],   # spine2
    [0.10, 0.09, -0.02], [-0.10, 0.09, -0.02],  # ankles
    [0.00, 1.28, 0.00],   # spine3
    [0.10, 0.03, 0.10], [-0.10, 0.03, 0.10],   # feet
    [0.00, 1.48, 0.00],   # neck
    [0.07, 1.40, 0.00], [-0.07, 1.40, 0.00],   # collars
    [0.00, 1.58, 0.02],   # head
    [0.18, 1.41, 0.00], [-0.18, 1.41, 0.00],   # shoulders
    [0.44, 1.41, 0.00], [-0.44, 1.41, 0.00],   # elbows
    [0.68, 1.41, 0.00], [-0.68, 1.41, 0.00],   # wrists
    [0.77, 1.41, 0.00], [-0.77, 1.41, 0.00],   # hands
])
# Leaf joints get a short bone of their own so their vertices can follow them.
_LEAF_TIPS = {15: [0.0, 1.72, 0.03], 22: [0.85, 1.41, 0.0], 23: [-0.85, 1.41, 0.0],
              10: [0.10, 0.02, 0.16], 11: [-0.10, 0.02, 0.16]}
_COCOPLUS_TARGETS = np.array([
    _JOINTS[8], _JOINTS[5], [-0.11, 0.90, 0.0], [0.11, 0.90, 0.0], _JOINTS[4], _JOINTS[7],
    _JOINTS[21], _JOINTS[19], _JOINTS[17], _JOINTS[16], _JOINTS[18], _JOINTS[20],
    [0.0, 1.47, 0.0], [0.0, 1.73, 0.02],                     # neck, head top
    [0.0, 1.60, 0.11], [0.035, 1.64, 0.09], [-0.035, 1.64, 0.09],  # nose, eyes
    [0.075, 1.61, 0.0], [-0.075, 1.61, 0.0],                  # ears
])


def _bones() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segments (start, end), their radius and the joint whose rotation drives them."""
    starts, ends, radii, drivers = [], [], [], []
    for j, p in enumerate(SMPL_PARENTS):
        if p < 0:
            continue
        starts.append(_JOINTS[p]); ends.append(_JOINTS[j]); drivers.append(p)
        r = 0.13 if p in (0, 3, 6, 9) else 0.075 if p in (1, 2, 4, 5) else 0.05
        radii.append(0.06 if p in (12, 13, 14) else r)
    for j, tip in _LEAF_TIPS.items():
        starts.append(_JOINTS[j]); ends.append(np.array(tip)); drivers.append(j)
        radii.append(0.1 if j == 15 else 0.045)
    return np.array(starts), np.array(ends), np.array(radii), np.array(drivers)


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances (..., S) from points (..., 3) to segments a→b (S, 3)."""
    ab = b - a
    t = np.clip(((points[..., None, :] - a) * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)
    closest = a + t[..., None] * ab
    return np.linalg.norm(points[..., None, :] - closest, axis=-1)


def _sphere() -> tuple[np.ndarray, np.ndarray]:
    """Unit UV sphere: (6890, 3) directions and (13776, 3) faces, outward winding."""
    theta = np.pi * (np.arange(1, RINGS + 1) / (RINGS + 1))  # polar angle from +y
    phi = 2 * np.pi * np.arange(SEGMENTS) / SEGMENTS
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], -1).reshape(-1, 3)
    dirs = np.concatenate([[[0.0, 1.0, 0.0]], ring, [[0.0, -1.0, 0.0]]])
    faces = []
    idx = lambda r, s: 1 + r * SEGMENTS + s % SEGMENTS  # noqa: E731
    for s in range(SEGMENTS):
        faces.append([0, idx(0, s), idx(0, s + 1)])
    for r in range(RINGS - 1):
        for s in range(SEGMENTS):
            faces.append([idx(r, s), idx(r + 1, s), idx(r + 1, s + 1)])
            faces.append([idx(r, s), idx(r + 1, s + 1), idx(r, s + 1)])
    last = len(dirs) - 1
    for s in range(SEGMENTS):
        faces.append([last, idx(RINGS - 1, s + 1), idx(RINGS - 1, s)])
    return dirs, np.array(faces, dtype=np.int64)


def _mirror_index(dirs: np.ndarray) -> np.ndarray:
    """Vertex permutation of the sphere under x → −x (phi → −phi)."""
    n = len(dirs)
    index = np.arange(n)
    ring = np.arange(1, n - 1) - 1
    r, s = ring // SEGMENTS, ring % SEGMENTS
    index[1:-1] = 1 + r * SEGMENTS + (-s) % SEGMENTS
    return index


def _gaussian_regressor(vertices: np.ndarray, targets: np.ndarray, sigma: float,
                        keep: int = 40) -> np.ndarray:
    """Convex weights over the ``keep`` vertices nearest each target, Gaussian in
    distance: sparse like the official regressors, which weight a few dozen
    vertices per joint."""
    d2 = ((targets[:, None, :] - vertices[None]) ** 2).sum(-1)
    w = np.exp(-d2 / (2 * sigma**2))
    far = np.argsort(d2, axis=1, kind="stable")[:, keep:]
    np.put_along_axis(w, far, 0.0, axis=1)
    return w / w.sum(1, keepdims=True)


@lru_cache(maxsize=8)
def _build(num_betas: int, seed: int, symmetric: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    dirs, faces = _sphere()
    starts, ends, radii, drivers = _bones()
    centre = np.array([0.0, 1.0, 0.0])
    # Shrink-wrap: along each direction, the farthest point inside the
    # capsules, found on a coarse grid and refined by bisection.
    def inside(p: np.ndarray) -> np.ndarray:
        return np.asarray((_segment_distance(p, starts, ends) < radii).any(-1))

    steps = np.linspace(0.0, 1.1, 56)
    hits = inside(centre + steps[None, :, None] * dirs[:, None, :])  # (V, T)
    last = len(steps) - 1 - np.argmax(hits[:, ::-1], axis=1)
    lo, hi = steps[last], steps[np.minimum(last + 1, len(steps) - 1)]
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        ok = inside(centre + mid[:, None] * dirs)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    verts = centre + lo[:, None] * dirs
    mirror = _mirror_index(dirs)
    flip = np.array([-1.0, 1.0, 1.0])

    def symmetrise(field: np.ndarray) -> np.ndarray:
        """Average a per-vertex (V, 3, ...) field with its mirror image."""
        mirrored = field[mirror] * flip.reshape((1, 3) + (1,) * (field.ndim - 2))
        return 0.5 * (field + mirrored)

    if symmetric:
        verts = symmetrise(verts)

    d = _segment_distance(verts, starts, ends)  # (V, bones)
    bone_w = np.exp(-((d / 0.04) ** 2))
    weights = np.zeros((len(verts), 24))
    for b, j in enumerate(drivers):
        weights[:, j] += bone_w[:, b]
    weights += 1e-12
    top4 = np.argsort(-weights, axis=1)[:, 4:]
    np.put_along_axis(weights, top4, 0.0, axis=1)
    weights /= weights.sum(1, keepdims=True)
    if symmetric:
        # The top-4 cut breaks exact left/right ties one way: average with the
        # mirror image (vertex mirrored, joints swapped) afterwards.
        joint_mirror = np.array(SMPL24_FLIP)
        weights = 0.5 * (weights + weights[mirror][:, joint_mirror])

    j_regressor = _gaussian_regressor(verts, _JOINTS, sigma=0.05)
    cocoplus = _gaussian_regressor(verts, _COCOPLUS_TARGETS, sigma=0.03)
    if symmetric:
        # Nearest-vertex cuts break exact ties one way: average with the mirror.
        j_regressor = 0.5 * (j_regressor + j_regressor[list(SMPL24_FLIP)][:, mirror])
        cocoplus = 0.5 * (cocoplus + cocoplus[list(COCOPLUS19.flip_permutation)][:, mirror])

    fields = [verts - verts.mean(0), (verts - [0, 0.0, 0]) * [0, 1, 0]]
    while len(fields) < num_betas:
        c = rng.normal(size=3) * [0.3, 0.8, 0.15] + [0, 1.0, 0]
        amp = rng.normal(size=3) * 0.5
        fields.append(np.exp(-((verts - c) ** 2).sum(-1, keepdims=True) / 0.08) * amp)
    shapedirs = np.stack(fields[:num_betas], -1) * 0.05  # (V, 3, K)
    if symmetric:
        shapedirs = symmetrise(shapedirs)
        posedirs = np.zeros((len(verts), 3, 207))
    else:
        posedirs = rng.normal(scale=2e-4, size=(len(verts), 3, 207))
    kintree = np.stack([np.array(SMPL_PARENTS, dtype=np.int64) % (2**32), np.arange(24)])
    out = {
        "v_template": verts, "shapedirs": shapedirs, "posedirs": posedirs,
        "J_regressor": j_regressor, "weights": weights, "kintree_table": kintree.astype(np.uint32),
        "f": faces.astype(np.uint32), "cocoplus_regressor": cocoplus,
    }
    if symmetric:
        out["mirror_vertex_index"] = mirror
    return out


def _cache_path(num_betas: int, seed: int, symmetric: bool) -> Path:
    """Where a built model is kept between processes: keyed by this file's source,
    so a change to the construction never reads a stale model."""
    import hashlib

    digest = hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:12]
    return cache_dir() / "synthetic" / f"smpl-{num_betas}-{seed}-{int(symmetric)}-{digest}.npz"


def synthetic_smpl_arrays(num_betas: int = 10, seed: int = 0, symmetric: bool = False) -> dict[str, np.ndarray]:
    """A synthetic SMPL-format model as a dict of arrays (float64, uint32 faces).

    Keys: the official names (``v_template``, ``shapedirs``, ``posedirs``,
    ``J_regressor`` (dense), ``weights``, ``kintree_table``, ``f``) plus HMR's
    ``cocoplus_regressor``; with ``symmetric``, also ``mirror_vertex_index``.
    Building takes a few seconds, so the result is cached in memory and on
    disk (``$OPENHMR_CACHE``, default ``~/.cache/openhmr``).
    """
    path = _cache_path(num_betas, seed, symmetric)
    try:
        with open_npz(path) as cached:
            return {k: cached[k] for k in cached.files}
    except (*NPZ_READ_ERRORS, KeyError):  # a damaged cache is built again
        pass
    arrays = _build(num_betas, seed, symmetric)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        save_npz(tmp, arrays)
        tmp.replace(path)
    except OSError:
        pass  # a read-only home only costs the rebuild
    return {k: v.copy() for k, v in arrays.items()}


def write_synthetic_smpl(path: str | Path, num_betas: int = 10, seed: int = 0,
                         symmetric: bool = False) -> Path:
    """Write the synthetic model as ``.npz`` (openhmr's format) or ``.pkl`` (plain pickle).

    The ``.pkl`` variant mimics the official layout: ``J_regressor`` is a
    scipy CSC matrix when scipy is installed.
    """
    import pickle

    path = Path(path)
    arrays = synthetic_smpl_arrays(num_betas, seed, symmetric)
    arrays.pop("mirror_vertex_index", None)
    if path.suffix == ".npz":
        save_smpl_npz(path, arrays)
    else:
        try:
            import scipy.sparse as sp

            arrays["J_regressor"] = sp.csc_matrix(arrays["J_regressor"])
        except ImportError:
            pass
        with open(path, "wb") as f:
            pickle.dump(arrays, f, protocol=2)
    return path
