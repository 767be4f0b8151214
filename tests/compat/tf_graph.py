"""Rebuild of the ORIGINAL HMR TensorFlow inference graph (TF1 graph mode + tf-slim).

This module is the single place where the reference graph is built. It is used
by ``tests/compat/make_tf_reference.py`` (numerical reference for the PyTorch
port) and by ``benchmarks/original_graph.py`` (speed reference).

It runs ONLY inside the separate TensorFlow environment created by
``tests/compat/setup_tf_env.sh`` (default ``/work/tfenv``). It must never import
torch or openhmr: that environment has neither.

Structure reproduced (see shared/reference/HMR_REFERENCE.md, sections 2-4 and 13):

* encoder: slim ``resnet_v2_50`` (num_classes=None, global pool) under
  ``resnet_arg_scope(weight_decay=1e-4)``, squeezed to B x 2048;
* regressor: variable scope ``3D_module`` with fc1/fc2 (ReLU, dropout off at
  test time) and a linear fc3 to 85, applied 3 times (IEF) with shared weights;
* ``mean_param``: a [1, 85] variable tiled to the batch as Theta_0;
* SMPL (benchmark path only): the tf_smpl forward with its non-trainable
  constants, fed with random arrays of the real shapes.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

# Number of IEF iterations used by the released model (flag ``num_stage``).
NUM_STAGE: int = 3
# Theta layout: 3 camera + 72 pose + 10 shape.
NUM_THETA: int = 85
IMG_SIZE: int = 224
FEATURE_DIM: int = 2048

# SMPL kinematic tree (row 0 of kintree_table in the SMPL pkl).
SMPL_PARENTS: list[int] = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
                           9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
SMPL_NUM_VERTS: int = 6890
SMPL_NUM_JOINTS: int = 24
SMPL_NUM_BETAS: int = 10
COCOPLUS_NUM_JOINTS: int = 19

# Modules that tf-slim reaches through TensorFlow's lazy loaders but that
# tf-keras 2.21 only ships under ``tf_keras.src``. TF's
# ``tensorflow/python/layers/normalization.py`` lazily imports
# ``tf_keras.legacy_tf_layers.normalization``, which slim.batch_norm needs
# (it builds a ``BatchNormalization`` layer on its default code path). The
# parent package must be aliased as well, otherwise importlib cannot resolve
# the dotted name. Nothing else is needed: convolutions, dense, dropout and
# pooling come from TF's own frozen copy ``tensorflow.python.keras``.
TF_KERAS_ALIASES: tuple[str, ...] = (
    "tf_keras.legacy_tf_layers",
    "tf_keras.legacy_tf_layers.normalization",
)


@dataclass
class TfModules:
    """The imported TensorFlow pieces (kept together so callers import once)."""

    tf: Any          # tensorflow.compat.v1
    tf2: Any         # top-level tensorflow (version string)
    slim: Any        # tf_slim
    resnet_v2: Any   # tf_slim.nets.resnet_v2


def install_tf_keras_aliases() -> list[str]:
    """Register ``tf_keras.legacy_tf_layers*`` as aliases of ``tf_keras.src.legacy_tf_layers*``.

    Must run before any tf-slim layer is *built* (the lazy loader resolves at
    first use). Returns the alias names that were installed.
    """
    installed: list[str] = []
    for alias in TF_KERAS_ALIASES:
        if alias in sys.modules:
            continue
        target = alias.replace("tf_keras.", "tf_keras.src.", 1)
        module: ModuleType = importlib.import_module(target)
        sys.modules[alias] = module
        installed.append(alias)
    return installed


def import_tf() -> TfModules:
    """Import TF 2.x in TF1 graph mode plus tf-slim, with the needed aliases."""
    # Keep the C++ INFO chatter (oneDNN, cpu_feature_guard) off the console.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf2

    install_tf_keras_aliases()
    import tf_slim as slim
    from tf_slim.nets import resnet_v2

    tf = tf2.compat.v1
    # Full TF1 semantics (graph mode, reference variables, v1 control flow),
    # as the original code ran under TF 1.x.
    tf.disable_v2_behavior()
    tf.logging.set_verbosity(tf.logging.ERROR)
    return TfModules(tf=tf, tf2=tf2, slim=slim, resnet_v2=resnet_v2)


# ---------------------------------------------------------------------------
# HMR encoder + regressor
# ---------------------------------------------------------------------------


@dataclass
class HmrGraph:
    """Handles on the tensors and variables of one built HMR graph."""

    images: Any                  # placeholder B x 224 x 224 x 3, NHWC, [-1, 1]
    features: Any                # B x 2048
    thetas: list[Any]            # NUM_STAGE tensors, each B x 85
    mean_param: Any              # tf.Variable [1, 85]
    model_vars: list[Any]        # encoder + 3D_module + mean_param (what the reference ckpt holds)
    smpl: dict[str, Any] = field(default_factory=dict)  # filled by build_smpl


def encoder_resnet(mods: TfModules, x: Any, is_training: bool = False,
                   weight_decay: float = 1e-4, reuse: bool = False) -> Any:
    """HMR ``Encoder_resnet``: slim resnet_v2_50 with global pool, squeezed to B x 2048."""
    tf, slim, resnet_v2 = mods.tf, mods.slim, mods.resnet_v2
    # "Encoder_resnet" is only a name_scope in HMR, so it never shows up in
    # variable names (they all start with resnet_v2_50/).
    with tf.name_scope("Encoder_resnet"):
        with slim.arg_scope(resnet_v2.resnet_arg_scope(weight_decay=weight_decay)):
            net, _ = resnet_v2.resnet_v2_50(
                x, num_classes=None, is_training=is_training, reuse=reuse,
                scope="resnet_v2_50")
        return tf.squeeze(net, axis=[1, 2])


def encoder_fc3_dropout(mods: TfModules, x: Any, num_output: int = NUM_THETA,
                        is_training: bool = False, reuse: bool = False,
                        name: str = "3D_module") -> Any:
    """HMR ``Encoder_fc3_dropout``: fc1-drop-fc2-drop-fc3, returning the Theta update."""
    tf, slim = mods.tf, mods.slim
    with tf.variable_scope(name, reuse=reuse):
        net = slim.fully_connected(x, 1024, scope="fc1")
        # slim.dropout's second argument is the KEEP probability; it is the
        # identity when is_training is False (as in RunModel).
        net = slim.dropout(net, 0.5, is_training=is_training, scope="dropout1")
        net = slim.fully_connected(net, 1024, scope="fc2")
        net = slim.dropout(net, 0.5, is_training=is_training, scope="dropout2")
        small_xavier = slim.variance_scaling_initializer(
            factor=0.01, mode="FAN_AVG", uniform=True)
        net = slim.fully_connected(net, num_output, activation_fn=None,
                                   weights_initializer=small_xavier, scope="fc3")
    return net


def build_hmr(mods: TfModules, batch_size: int, num_stage: int = NUM_STAGE) -> HmrGraph:
    """Build the test-time HMR graph (is_training=False) in the current default graph.

    The batch size is static, like the original (the SMPL layer needs it).
    """
    tf = mods.tf
    images = tf.placeholder(tf.float32, shape=[batch_size, IMG_SIZE, IMG_SIZE, 3],
                            name="input_images")
    features = encoder_resnet(mods, images, is_training=False, reuse=False)

    # RunModel creates mean_param as zeros and restores it from the checkpoint;
    # the values are set later (randomise_weights / Saver.restore).
    mean_param = tf.Variable(np.zeros((1, NUM_THETA), dtype=np.float32),
                             name="mean_param", dtype=tf.float32, trainable=True)
    theta_prev = tf.tile(mean_param, [batch_size, 1])
    thetas: list[Any] = []
    for i in range(num_stage):
        state = tf.concat([features, theta_prev], axis=1)  # [phi, Theta_t], 2133-D
        delta = encoder_fc3_dropout(mods, state, num_output=NUM_THETA,
                                    is_training=False, reuse=(i > 0))
        theta_here = theta_prev + delta
        thetas.append(theta_here)
        theta_prev = theta_here

    model_vars = [v for v in tf.global_variables()
                  if v.op.name.startswith(("resnet_v2_50/", "3D_module/"))
                  or v.op.name == "mean_param"]
    return HmrGraph(images=images, features=features, thetas=thetas,
                    mean_param=mean_param, model_vars=model_vars)


# ---------------------------------------------------------------------------
# SMPL layer (tf_smpl), used on the final Theta as in RunModel
# ---------------------------------------------------------------------------


def batch_skew(mods: TfModules, vec: Any, batch_size: int) -> Any:
    """N x 3 -> N x 3 x 3 skew-symmetric matrices [[0,-z,y],[z,0,-x],[-y,x,0]].

    Built with scatter_nd into flat 9-vectors, as tf_smpl does.
    """
    tf = mods.tf
    col_inds = tf.constant([1, 2, 3, 5, 6, 7])
    indices = tf.reshape(
        tf.reshape(tf.range(0, batch_size) * 9, [-1, 1]) + col_inds, [-1, 1])
    updates = tf.reshape(
        tf.stack([-vec[:, 2], vec[:, 1], vec[:, 2],
                  -vec[:, 0], -vec[:, 1], vec[:, 0]], axis=1), [-1])
    res = tf.scatter_nd(indices, updates, [batch_size * 9])
    return tf.reshape(res, [batch_size, 3, 3])


def batch_rodrigues(mods: TfModules, theta: Any) -> Any:
    """Axis-angle N x 3 -> rotation matrices N x 3 x 3 (tf_smpl ``batch_rodrigues``)."""
    tf = mods.tf
    n = theta.shape.as_list()[0]
    # The epsilon goes on every component before the norm (not on the norm).
    angle = tf.expand_dims(tf.norm(theta + 1e-8, axis=1), -1)
    r = tf.expand_dims(tf.math.divide(theta, angle), -1)
    angle = tf.expand_dims(angle, -1)
    cos = tf.cos(angle)
    sin = tf.sin(angle)
    outer = tf.matmul(r, r, transpose_b=True)
    eyes = tf.tile(tf.expand_dims(tf.eye(3), 0), [n, 1, 1])
    return cos * eyes + (1.0 - cos) * outer + sin * batch_skew(mods, r, n)


def batch_global_rigid_transformation(mods: TfModules, rs: Any, js: Any,
                                      parents: list[int]) -> tuple[Any, Any]:
    """Kinematic chain (rotate_base=False): posed joints N x 24 x 3 and skinning A N x 24 x 4 x 4."""
    tf = mods.tf
    n = rs.shape.as_list()[0]
    js = tf.expand_dims(js, -1)  # N x 24 x 3 x 1

    def make_a(rot: Any, t: Any) -> Any:
        # [R t; 0 1] from N x 3 x 3 and N x 3 x 1.
        r_homo = tf.pad(rot, [[0, 0], [0, 1], [0, 0]])
        t_homo = tf.concat([t, tf.ones([n, 1, 1])], axis=1)
        return tf.concat([r_homo, t_homo], axis=2)

    results = [make_a(rs[:, 0], js[:, 0])]
    for i in range(1, len(parents)):
        j_here = js[:, i] - js[:, parents[i]]
        results.append(tf.matmul(results[parents[i]], make_a(rs[:, i], j_here)))
    stacked = tf.stack(results, axis=1)  # N x 24 x 4 x 4
    new_j = stacked[:, :, :3, 3]
    # Remove G_i [J_i; 0] from the translation column: A_i maps rest-pose points.
    js_w0 = tf.concat([js, tf.zeros([n, len(parents), 1, 1])], axis=2)
    init_bone = tf.matmul(stacked, js_w0)
    init_bone = tf.pad(init_bone, [[0, 0], [0, 0], [0, 0], [3, 0]])
    return new_j, stacked - init_bone


def make_smpl_arrays(seed: int) -> dict[str, np.ndarray]:
    """Random SMPL constants with the real shapes (no SMPL model file is available).

    Regressor/skinning matrices are made non-negative with unit column/row
    sums so that the outputs have plausible magnitudes (joints are weighted
    averages of vertices).
    """
    rng = np.random.default_rng(seed)
    nv, nj = SMPL_NUM_VERTS, SMPL_NUM_JOINTS

    def normalised(rows: int, cols: int, axis: int) -> np.ndarray:
        m = rng.uniform(0.0, 1.0, size=(rows, cols)) ** 8  # peaky, like real sparse weights
        return (m / m.sum(axis=axis, keepdims=True)).astype(np.float32)

    return {
        "v_template": rng.normal(0.0, 0.3, size=(nv, 3)).astype(np.float32),
        "shapedirs": rng.normal(0.0, 0.01, size=(SMPL_NUM_BETAS, nv * 3)).astype(np.float32),
        "posedirs": rng.normal(0.0, 0.005, size=(207, nv * 3)).astype(np.float32),
        "J_regressor": normalised(nv, nj, axis=0),          # each joint: average of vertices
        "lbs_weights": normalised(nv, nj, axis=1),          # each vertex: convex skinning weights
        "cocoplus_regressor": normalised(nv, COCOPLUS_NUM_JOINTS, axis=0),
    }


def build_smpl(mods: TfModules, theta: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """tf_smpl ``SMPL.__call__(beta, pose, get_skin=True)`` on Theta (B x 85) + weak-perspective projection.

    The constants are non-trainable tf.Variables with the original names, as
    in tf_smpl, initialised from ``arrays``. Returns verts, joints (3D,
    cocoplus 19), Rs, cams, joints2d (normalised crop coordinates).
    """
    tf = mods.tf
    n = theta.shape.as_list()[0]
    nv = SMPL_NUM_VERTS

    def const_var(name: str) -> Any:
        # initial_value from a numpy array: stored once as a graph constant,
        # read as a variable at run time like the original.
        return tf.Variable(arrays[name], name=name, dtype=tf.float32, trainable=False)

    v_template = const_var("v_template")
    shapedirs = const_var("shapedirs")
    j_regressor = const_var("J_regressor")
    posedirs = const_var("posedirs")
    weights = const_var("lbs_weights")
    cocoplus = const_var("cocoplus_regressor")

    cams = theta[:, :3]
    pose = theta[:, 3:75]
    beta = theta[:, 75:]

    # 1. shape blend shapes
    v_shaped = tf.reshape(tf.matmul(beta, shapedirs), [-1, nv, 3]) + v_template
    # 2. rest joints, per coordinate
    j = tf.stack([tf.matmul(v_shaped[:, :, k], j_regressor) for k in range(3)], axis=2)
    # 3. Rodrigues on all 24 joints
    rs = tf.reshape(batch_rodrigues(mods, tf.reshape(pose, [-1, 3])), [-1, 24, 3, 3])
    # 4. pose blend shapes from (R - I) of the 23 non-root joints
    pose_feature = tf.reshape(rs[:, 1:, :, :] - tf.eye(3), [-1, 207])
    v_posed = tf.reshape(tf.matmul(pose_feature, posedirs), [-1, nv, 3]) + v_shaped
    # 5. kinematic chain
    j_transformed, a = batch_global_rigid_transformation(mods, rs, j, SMPL_PARENTS)
    # 6. linear blend skinning
    w = tf.reshape(tf.tile(weights, [n, 1]), [n, -1, 24])
    t = tf.reshape(tf.matmul(w, tf.reshape(a, [n, 24, 16])), [n, -1, 4, 4])
    v_posed_homo = tf.concat([v_posed, tf.ones([n, nv, 1])], axis=2)
    v_homo = tf.matmul(t, tf.expand_dims(v_posed_homo, -1))
    verts = v_homo[:, :, :3, 0]
    # 7. cocoplus joints from the skinned vertices
    joints = tf.stack([tf.matmul(verts[:, :, k], cocoplus) for k in range(3)], axis=2)
    # Projection (batch_orth_proj_idrot): translation added before scaling.
    cam = tf.reshape(cams, [-1, 1, 3])
    joints2d = cam[:, :, 0:1] * (joints[:, :, :2] + cam[:, :, 1:3])
    return {"verts": verts, "joints": joints, "Rs": rs, "J_transformed": j_transformed,
            "cams": cams, "joints2d": joints2d}


# ---------------------------------------------------------------------------
# Deterministic inputs and random weights
# ---------------------------------------------------------------------------


def make_images(batch_size: int, seed: int) -> np.ndarray:
    """Deterministic B x 224 x 224 x 3 float32 NHWC images in [-1, 1].

    Smooth sinusoidal/radial patterns (different per image) plus a little
    seeded noise, so the encoder sees structure at several scales.
    """
    rng = np.random.default_rng(seed + 1000)
    lin = np.linspace(-1.0, 1.0, IMG_SIZE, dtype=np.float64)
    yy, xx = np.meshgrid(lin, lin, indexing="ij")
    out = np.empty((batch_size, IMG_SIZE, IMG_SIZE, 3), dtype=np.float32)
    for b in range(batch_size):
        phase = 0.9 * b
        red = np.sin(3.0 * np.pi * xx + phase) * np.cos(2.0 * np.pi * yy)
        green = np.tanh(2.0 * (xx * yy + 0.3 * np.sin(phase)))
        blue = np.cos(5.0 * np.sqrt(xx ** 2 + (yy - 0.2 * b) ** 2) - phase)
        img = 0.8 * np.stack([red, green, blue], axis=-1)
        img += rng.normal(0.0, 0.15, size=img.shape)
        out[b] = np.clip(img, -1.0, 1.0)
    return out


def plausible_mean_theta(rng: np.random.Generator) -> np.ndarray:
    """A [1, 85] Theta_0 like the learned mean_param: s~0.9, root [pi,0,0], small pose/shape."""
    theta = np.zeros((1, NUM_THETA), dtype=np.float64)
    theta[0, 0] = 0.9 + rng.normal(0.0, 0.02)
    theta[0, 1:3] = rng.normal(0.0, 0.03, size=2)
    theta[0, 3:6] = [np.pi, 0.0, 0.0]
    theta[0, 6:75] = rng.normal(0.0, 0.15, size=69)
    theta[0, 75:] = rng.normal(0.0, 0.5, size=10)
    return theta.astype(np.float32)


def _random_value(name: str, shape: list[int], rng: np.random.Generator) -> np.ndarray:
    """Random value for one model variable, chosen by its role (from the name)."""
    leaf = name.rsplit("/", 1)[-1]
    if name == "mean_param":
        return plausible_mean_theta(rng)
    if leaf == "weights" and len(shape) == 4:
        # He-normal conv kernels. The last conv of each residual branch
        # (conv3) is damped so 16 residual additions do not blow up the
        # un-normalised unit inputs.
        fan_in = shape[0] * shape[1] * shape[2]
        gain = 0.5 if "/conv3/" in name + "/" else 1.0
        return rng.normal(0.0, gain * np.sqrt(2.0 / fan_in), size=shape)
    if leaf == "weights" and len(shape) == 2:
        # Glorot-uniform dense weights; fc3 damped so each IEF step moves
        # Theta by O(0.1), like a trained regressor.
        limit = np.sqrt(6.0 / (shape[0] + shape[1]))
        scale = 0.3 if "/fc3/" in name else 1.0
        return scale * rng.uniform(-limit, limit, size=shape)
    if leaf == "biases":
        std = 0.01 if "/fc3/" in name else 0.05
        return rng.normal(0.0, std, size=shape)
    if leaf == "gamma":
        return rng.uniform(0.7, 1.3, size=shape)
    if leaf == "beta":
        return rng.normal(0.0, 0.2, size=shape)
    if leaf == "moving_mean":
        return rng.normal(0.0, 0.1, size=shape)       # replaced by calibration
    if leaf == "moving_variance":
        return rng.uniform(0.5, 1.5, size=shape)      # replaced by calibration
    raise ValueError(f"no randomisation rule for variable {name} {shape}")


def _bn_ops_in_order(graph: Any) -> list[Any]:
    """Inference batch-norm ops of the encoder, in creation (= topological) order."""
    return [op for op in graph.get_operations()
            if op.type.startswith("FusedBatchNorm") and "resnet_v2_50/" in op.name]


def _bn_scope(op: Any) -> str:
    """Variable scope of a BN op, e.g. resnet_v2_50/block1/unit_1/bottleneck_v2/preact."""
    # Op names carry the extra "Encoder_resnet/" name scope, variables do not.
    name = op.name.removeprefix("Encoder_resnet/")
    return name.rsplit("/", 1)[0]


def randomise_weights(mods: TfModules, sess: Any, hmr: HmrGraph, images: np.ndarray,
                      seed: int) -> dict[str, float]:
    """Give every model variable a seeded random value, then calibrate the BN statistics.

    Calibration: going through the 49 BN layers in order, the per-channel
    mean/variance of the layer's actual input on ``images`` is measured and
    the moving statistics are set to a random perturbation of it
    (mean + 0.2 std N(0,1), var x U(0.5,1.5)). This mimics a trained network
    (activations stay O(1) through all 16 units) while keeping BN non-trivial.
    Returns some magnitude statistics for logging.
    """
    rng = np.random.default_rng(seed)
    by_name = {v.op.name: v for v in hmr.model_vars}
    for name in sorted(by_name):  # sorted: the draw order must not depend on graph order
        var = by_name[name]
        shape = var.shape.as_list()
        var.load(_random_value(name, shape, rng).astype(np.float32), sess)

    bn_ops = _bn_ops_in_order(sess.graph)
    feed = {hmr.images: images}
    for op in bn_ops:
        scope = _bn_scope(op)
        x = sess.run(op.inputs[0], feed_dict=feed).astype(np.float64)
        mean = x.mean(axis=(0, 1, 2))
        var = x.var(axis=(0, 1, 2))
        std = np.sqrt(var)
        # Floor for channels that are (nearly) constant on this small batch.
        var = np.maximum(var, 1e-2)
        by_name[scope + "/moving_mean"].load(
            (mean + 0.2 * std * rng.normal(size=mean.shape)).astype(np.float32), sess)
        by_name[scope + "/moving_variance"].load(
            (var * rng.uniform(0.5, 1.5, size=var.shape)).astype(np.float32), sess)
    return {"num_bn_calibrated": float(len(bn_ops))}


def get_weight_values(sess: Any, hmr: HmrGraph) -> dict[str, np.ndarray]:
    """Current values of the model variables, by variable name."""
    values = sess.run(hmr.model_vars)
    return {v.op.name: val for v, val in zip(hmr.model_vars, values)}


def set_weight_values(sess: Any, hmr: HmrGraph, values: dict[str, np.ndarray]) -> None:
    """Load values from ``get_weight_values`` (possibly of a graph with another batch size)."""
    for var in hmr.model_vars:
        var.load(values[var.op.name], sess)


def read_ckpt_table(path: str) -> dict[str, list[int]]:
    """Parse hmr_ckpt_variables.tsv into {name: shape}."""
    table: dict[str, list[int]] = {}
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        i_name, i_shape = header.index("name"), header.index("shape")
        for line in fh:
            cols = line.rstrip("\n").split("\t")
            if len(cols) <= max(i_name, i_shape):
                continue
            shape_txt = cols[i_shape].strip("[]")
            table[cols[i_name]] = [int(s) for s in shape_txt.split(",")] if shape_txt else []
    return table


def expected_model_vars(table: dict[str, list[int]]) -> dict[str, list[int]]:
    """Entries of the released table that an inference graph must hold (no Adam, no D, no SMPL)."""
    out: dict[str, list[int]] = {}
    for name, shape in table.items():
        if name.endswith(("/Adam", "/Adam_1")):
            continue
        if name.startswith(("resnet_v2_50/", "3D_module/")) or name == "mean_param":
            out[name] = shape
    return out


def compare_with_table(hmr: HmrGraph, table_path: str) -> tuple[bool, str]:
    """Check that the graph's model variables equal the released checkpoint's (names and shapes)."""
    expected = expected_model_vars(read_ckpt_table(table_path))
    got = {v.op.name: v.shape.as_list() for v in hmr.model_vars}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    bad_shape = sorted(n for n in set(got) & set(expected) if got[n] != expected[n])
    n_res = sum(n.startswith("resnet_v2_50/") for n in got)
    n_3d = sum(n.startswith("3D_module/") for n in got)
    n_mp = sum(n == "mean_param" for n in got)
    ok = not missing and not extra and not bad_shape
    msg = (f"graph vars: {len(got)} (resnet_v2_50 {n_res}, 3D_module {n_3d}, mean_param {n_mp}); "
           f"expected from table: {len(expected)}; missing {len(missing)}, extra {len(extra)}, "
           f"shape mismatches {len(bad_shape)}")
    if not ok:
        msg += f"\n  missing: {missing[:10]}\n  extra: {extra[:10]}\n  bad shape: {bad_shape[:10]}"
    return ok, msg
