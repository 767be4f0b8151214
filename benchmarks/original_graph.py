"""Speed reference: the ORIGINAL HMR TensorFlow graph on the CPU, crop -> Theta -> SMPL vertices.

Runs in the separate TF environment (tests/compat/setup_tf_env.sh), never in
openhmr's venv:

    /work/tfenv/bin/python benchmarks/original_graph.py --batch 1 16 --repeats 30 --json out.json

What is timed (one ``Session.run`` per batch, like ``RunModel.predict``): the
float32 crop batch is fed through a placeholder, the slim resnet_v2_50
encoder, 3 IEF iterations of the 3D_module regressor, then the tf_smpl layer
(shape/pose blend shapes, Rodrigues, kinematic chain, LBS, cocoplus joints)
and the weak-perspective projection on the final Theta. Fetched: theta,
verts, 3D joints, 2D joints and cams. Weights and SMPL constants are seeded
random arrays of the real shapes (the graph's cost does not depend on them).

``--json`` writes ``{"batch": {"1": {"median_ms": ..., "per_image_ms": ...}, ...},
"tf_version": ...}``. openhmr's ``benchmarks/vs_original.py`` runs this file
as a subprocess with /work/tfenv/bin/python.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

# The shared graph code lives in tests/compat (not an installed package).
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_REPO_ROOT, "tests", "compat"))

import tf_graph  # noqa: E402  (needs the sys.path entry above)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16], help="batch sizes")
    p.add_argument("--repeats", type=int, default=30, help="timed runs per batch size (>=1)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    p.add_argument("--threads", type=int, default=None,
                   help="intra- and inter-op threads (default: TF's own defaults)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-theta-only", action="store_true",
                   help="skip the extra crop->Theta (no SMPL) timing")
    p.add_argument("--json", default=None, help="write results to this JSON file")
    args = p.parse_args(argv)
    if args.json is not None and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        p.error(f"--json {args.json}: its folder does not exist")  # now, not after the timing
    if args.json is not None and os.path.isdir(args.json):
        p.error(f"--json {args.json} is a folder; give a file name")
    return args


def _time_runs(sess: Any, fetches: Any, feed: dict[Any, np.ndarray],
               warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process-CPU milliseconds of ``repeats`` runs after ``warmup`` untimed ones.

    CPU time (all threads) is kept because this 2-core machine is shared:
    it shows whether a slow wall-clock figure came from contention.
    """
    for _ in range(warmup):
        sess.run(fetches, feed_dict=feed)
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        sess.run(fetches, feed_dict=feed)
        wall.append((time.perf_counter() - t0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
    return wall, cpu


def make_weights(mods: tf_graph.TfModules, seed: int) -> dict[str, np.ndarray]:
    """Random, BN-calibrated weights, made once on a batch-2 graph and reused for every batch size.

    The weights do not depend on the batch size, and calibrating the 49 BN
    layers on a batch-16 graph would cost far more than the benchmark itself.
    """
    tf = mods.tf
    images = tf_graph.make_images(2, seed)
    graph = tf.Graph()
    with graph.as_default():
        hmr = tf_graph.build_hmr(mods, 2)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            tf_graph.randomise_weights(mods, sess, hmr, images, seed)
            return tf_graph.get_weight_values(sess, hmr)


def bench_batch(mods: tf_graph.TfModules, batch: int, args: argparse.Namespace,
                weights: dict[str, np.ndarray],
                smpl_arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """Build the graph for one static batch size, load the weights and time it."""
    tf = mods.tf
    config = tf.ConfigProto()
    if args.threads is not None:
        config.intra_op_parallelism_threads = args.threads
        config.inter_op_parallelism_threads = args.threads
    images = tf_graph.make_images(batch, args.seed)
    graph = tf.Graph()
    with graph.as_default():
        hmr = tf_graph.build_hmr(mods, batch)
        smpl = tf_graph.build_smpl(mods, hmr.thetas[-1], smpl_arrays)
        with tf.Session(graph=graph, config=config) as sess:
            sess.run(tf.global_variables_initializer())
            tf_graph.set_weight_values(sess, hmr, weights)
            # RunModel.predict fetches the final-iteration values only.
            fetches = {"theta": hmr.thetas[-1], "verts": smpl["verts"],
                       "joints3d": smpl["joints"], "joints": smpl["joints2d"],
                       "cams": smpl["cams"]}
            feed = {hmr.images: images}
            out = sess.run(fetches, feed_dict=feed)
            if not all(np.isfinite(v).all() for v in out.values()):
                raise RuntimeError("non-finite outputs: the timing would not be meaningful")
            times, cpu_times = _time_runs(sess, fetches, feed, args.warmup, args.repeats)
            theta_times: list[float] = []
            if not args.no_theta_only:
                theta_times, _ = _time_runs(sess, hmr.thetas[-1], feed,
                                            args.warmup, args.repeats)

    med = statistics.median(times)
    result = {
        "median_ms": med,
        "per_image_ms": med / batch,
        "mean_ms": statistics.fmean(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "repeats": len(times),
        "median_cpu_ms": statistics.median(cpu_times),
    }
    if theta_times:
        result["theta_only_median_ms"] = statistics.median(theta_times)
        result["theta_only_per_image_ms"] = result["theta_only_median_ms"] / batch
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark for each batch size and print/write the results."""
    args = parse_args(argv)
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    try:
        mods = tf_graph.import_tf()
    except ModuleNotFoundError as e:
        sys.exit(f"error: {e.msg}: this script runs in the TF environment of tests/compat/setup_tf_env.sh, "
                 "not in openhmr's")
    smpl_arrays = tf_graph.make_smpl_arrays(args.seed + 1)
    weights = make_weights(mods, args.seed)
    results: dict[str, dict[str, float]] = {}
    for batch in args.batch:
        res = bench_batch(mods, batch, args, weights, smpl_arrays)
        results[str(batch)] = res
        line = (f"batch {batch:3d}: median {res['median_ms']:8.2f} ms/batch, "
                f"{res['per_image_ms']:7.2f} ms/img (min {res['min_ms']:.2f}, "
                f"n={res['repeats']}, process CPU {res['median_cpu_ms']:.1f} ms)")
        if "theta_only_median_ms" in res:
            line += f"; crop->Theta only {res['theta_only_median_ms']:.2f} ms/batch"
        print(line, flush=True)

    report: dict[str, Any] = {
        "batch": results,
        "tf_version": mods.tf2.__version__,
        "numpy_version": np.__version__,
        "threads": args.threads if args.threads is not None else "tf-default",
        "cpu_count": os.cpu_count(),
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "path": "crop -> resnet_v2_50 -> 3x IEF 3D_module -> TF SMPL (verts, cocoplus joints) -> proj",
        "warmup": args.warmup,
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
