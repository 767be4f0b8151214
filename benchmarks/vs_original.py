"""openhmr's inference backends against the original HMR TensorFlow graph, in one run.

Times the whole inference path, crop → Θ → SMPL vertices (+ keypoints), at
batch 1 and 16:

* the original graph (TF 2.x compat.v1 + tf-slim: tests/compat/tf_graph.py
  with the weights and fetches of ``benchmarks/original_graph.py``), in a
  child process of the TF environment given by ``--tf-python`` (see
  tests/compat/README.md), fed the same crops;
* every openhmr backend (``openhmr.inference``): eager fp32, torch.compile,
  ONNX Runtime fp32, bf16 (eager / compiled); and, for information, ONNX
  Runtime int8 (``openhmr export-onnx --int8``: static quantisation calibrated
  on 16 synthetic crops), which is not a backend because it is outside the
  accuracy tolerance.

Both sides use random weights of the real shapes (speed does not depend on
their values). openhmr's model is ``calibrated_random_hmr``: BN statistics
calibrated on the crops, so that the accuracy columns (each backend against
eager fp32 on the same crops: worst vertex distance in mm, worst 2D keypoint
distance in pixels of the 224 crop) are meaningful; a backend whose error is
above 5 mm / 1 px is marked and is not what ``auto`` picks for such weights.
Accuracy is reported for each ``--residual-gains`` proxy: 0.5, the original
one, and 0.3, whose perturbation gains are within those measured on trained
CNNs (see ``openhmr.inference.calibrated``); timings use the first.

The crops: the images in ../shared/reference/images taken as tight crops
(224×224), repeated to fill batch 16; synthetic crops if that folder is
absent. All variants, the TF graph included, are timed interleaved (blocks
of 5 calls of each in turn) so that load from other processes hits them
alike. Medians are reported; on a shared machine also check ``uptime``.

    python benchmarks/vs_original.py [--tf-python /work/tfenv/bin/python] [--batch 1 16]
        [--repeats 20] [--backends torch compiled onnx ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from openhmr.nets import HMR

REPO = Path(__file__).resolve().parents[1]
SHARED_IMAGES = REPO.parent / "shared" / "reference" / "images"
DEFAULT_TF_PYTHON = Path("/work/tfenv/bin/python")
DEFAULT_BACKENDS = ("torch", "compiled", "onnx", "bf16", "compiled-bf16", "onnx-int8")
INT8 = "onnx-int8"  # measured here, not offered as a backend (openhmr.inference.backends)


def build(name: str, model: HMR, workdir: Path):
    """An openhmr backend, or for ``onnx-int8`` the quantised graph in ONNX Runtime."""
    from openhmr.inference import build_backend

    if name != INT8:
        return build_backend(name, model)
    from openhmr.inference.calibrated import synthetic_crops
    from openhmr.inference.onnx import OnnxPredictor, export_onnx, quantize_int8

    folder = Path(tempfile.mkdtemp(dir=workdir))
    fp32 = export_onnx(model, folder / "fp32.onnx")
    return OnnxPredictor(quantize_int8(fp32, folder / "int8.onnx", synthetic_crops(16, seed=1234)), model.body)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tf-python", type=Path, default=DEFAULT_TF_PYTHON,
                   help="python of the TF environment (tests/compat/setup_tf_env.sh)")
    p.add_argument("--no-original", action="store_true", help="skip the TF graph")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    p.add_argument("--repeats", type=int, default=20, help="timed calls per backend and batch size")
    p.add_argument("--backends", nargs="+", default=list(DEFAULT_BACKENDS))
    p.add_argument("--images", type=Path, default=SHARED_IMAGES,
                   help="folder of images used as tight crops (default ../shared/reference/images)")
    p.add_argument("--threads", type=int, default=None, help="torch / ONNX Runtime threads")
    p.add_argument("--residual-gains", type=float, nargs="+", default=[0.5, 0.3],
                   help="calibrated_random_hmr residual_gain of each accuracy model (the first is timed)")
    p.add_argument("--json", type=Path, default=None, help="write all figures to this file")
    args = p.parse_args(argv)
    from openhmr.inference.backends import BACKENDS

    known = [b for b in BACKENDS if b != "auto"] + [INT8]
    unknown = [b for b in args.backends if b not in known]
    if unknown:
        p.error(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    # checked now, not after the minutes of timing
    if args.json is not None and not args.json.parent.is_dir():
        p.error(f"--json {args.json}: the folder {args.json.parent} does not exist")
    if args.json is not None and args.json.is_dir():
        p.error(f"--json {args.json} is a folder; give a file name")
    if args.images != SHARED_IMAGES and not args.images.is_dir():
        p.error(f"--images {args.images}: no such folder")
    return args


def load_crops(folder: Path, count: int) -> tuple[torch.Tensor, str]:
    """(count, 3, 224, 224) crops in [-1, 1]: ``folder``'s images as tight crops,
    repeated in turn, or synthetic ones where the default folder (../shared) is
    absent. A folder given that holds a file that cannot be read exits with
    its one line, as ``openhmr bench --images`` does."""
    from openhmr.data.crop import folder_tight_crops
    from openhmr.errors import InputError
    from openhmr.inference.calibrated import synthetic_crops

    if folder == SHARED_IMAGES and not folder.is_dir():
        return synthetic_crops(count, seed=7), "synthetic crops"
    try:
        x = folder_tight_crops(folder, limit=count)
    except InputError as e:
        sys.exit(f"error: --images: {e}")
    reps = -(-count // len(x))
    return x.repeat(reps, 1, 1, 1)[:count].contiguous(), f"{len(x)} images of {folder}"


# Runs in the TF environment: builds the original graph once per batch size
# (benchmarks/original_graph.py's weights and fetches), then times blocks of
# Session.run calls on request: "BATCH N" on stdin → one JSON line of N
# (wall ms, process-CPU ms) pairs on stdout.
TF_SERVER = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import original_graph as og
import tf_graph
mods = tf_graph.import_tf()
tf = mods.tf
weights = og.make_weights(mods, 0)
smpl_arrays = tf_graph.make_smpl_arrays(1)
threads = int(sys.argv[3])
sessions = {}
for batch in map(int, sys.argv[4:]):
    config = tf.ConfigProto()
    if threads:
        config.intra_op_parallelism_threads = threads
        config.inter_op_parallelism_threads = threads
    crops = np.load(f"{sys.argv[2]}/crops_{batch}.npy")
    graph = tf.Graph()
    with graph.as_default():
        hmr = tf_graph.build_hmr(mods, batch)
        smpl = tf_graph.build_smpl(mods, hmr.thetas[-1], smpl_arrays)
        sess = tf.Session(graph=graph, config=config)
        sess.run(tf.global_variables_initializer())
        tf_graph.set_weight_values(sess, hmr, weights)
    fetches = {"theta": hmr.thetas[-1], "verts": smpl["verts"], "joints3d": smpl["joints"],
               "joints": smpl["joints2d"], "cams": smpl["cams"]}
    sessions[batch] = (sess, fetches, {hmr.images: crops})
    for _ in range(3):
        sess.run(fetches, feed_dict={hmr.images: crops})
print("ready", flush=True)
for line in sys.stdin:
    batch, count = map(int, line.split())
    sess, fetches, feed = sessions[batch]
    sess.run(fetches, feed_dict=feed)
    out = []
    for _ in range(count):
        c0, t0 = time.process_time(), time.perf_counter()
        sess.run(fetches, feed_dict=feed)
        out.append(((time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000))
    print(json.dumps(out), flush=True)
"""


class OriginalGraph:
    """The original HMR graph in a child process of the TF environment.

    ``time(batch, n)`` runs one untimed and ``n`` timed ``Session.run`` calls
    (crop → Θ → TF SMPL → projection, like ``RunModel.predict``) on the same
    crops as openhmr, so its blocks can be interleaved with openhmr's.
    """

    def __init__(self, tf_python: Path, crops: torch.Tensor, batches: list[int], threads: int | None,
                 workdir: Path) -> None:
        import numpy as np

        for b in batches:  # NHWC float32, as the original feeds its placeholder
            np.save(workdir / f"crops_{b}.npy", crops[:b].permute(0, 2, 3, 1).contiguous().numpy())
        # The TF env has its own numpy: never let this venv's paths leak into it.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        self.proc = subprocess.Popen(
            [str(tf_python), "-c", TF_SERVER, str(REPO / "benchmarks"), str(workdir), str(threads or 0),
             *map(str, batches)],
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both pipes asked for
        self.requests, self.replies = self.proc.stdin, self.proc.stdout
        line = self.replies.readline()
        if line.strip() != "ready":
            self.close()
            raise RuntimeError("the TF graph did not start (run tests/compat/setup_tf_env.sh?)")

    def time(self, batch: int, count: int) -> list[tuple[float, float]]:
        self.requests.write(f"{batch} {count}\n")
        self.requests.flush()
        return [(float(t[0]), float(t[1])) for t in json.loads(self.replies.readline())]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.requests.close()
            self.proc.wait(timeout=60)


def original_block(graph: OriginalGraph, batch: int, count: int) -> list[tuple[float, float]]:
    """``count`` timed runs of the original graph at ``batch`` (a block of ``time_interleaved``)."""
    return graph.time(batch, count)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ascending, as `openhmr bench` takes them: a compiled backend pads a batch
    # to a size already compiled, so "batch 1" after batch 4 would run at 4.
    args.batch = sorted(set(args.batch))
    if args.threads:
        torch.set_num_threads(args.threads)
    from openhmr.body import SMPL
    from openhmr.body.synthetic import synthetic_smpl_arrays
    from openhmr.inference import build_backend, compare_thetas
    from openhmr.inference.calibrated import calibrated_random_hmr
    from openhmr.inference.timing import block_timer, time_interleaved

    crops, source = load_crops(args.images, max(args.batch))
    body = SMPL(synthetic_smpl_arrays())
    gains = args.residual_gains
    model = calibrated_random_hmr(body, images=crops[: min(len(crops), 8)], residual_gain=gains[0])
    os.environ.setdefault("OPENHMR_CACHE", str(Path(tempfile.gettempdir()) / "openhmr-bench-cache"))
    workdir = tempfile.TemporaryDirectory()  # TF's crops, the int8 graphs
    scratch = Path(workdir.name)

    predictors, one_off = {}, {}
    for name in args.backends:
        t0 = time.perf_counter()
        try:
            predictors[name] = build(name, model, scratch)
        except Exception as e:  # noqa: BLE001 - report and time the others
            print(f"{name}: unavailable ({e})", file=sys.stderr)
            continue
        one_off[name] = {"build_s": time.perf_counter() - t0}
    if not predictors:
        sys.exit("error: none of the backends could be built (see above)")

    original = None
    if not args.no_original:
        if args.tf_python.is_file():
            print("building the original TF graph ...", file=sys.stderr, flush=True)
            original = OriginalGraph(args.tf_python, crops, args.batch, args.threads, scratch)
        else:
            print(f"no TF environment at {args.tf_python} (tests/compat/setup_tf_env.sh); "
                  "timing openhmr only", file=sys.stderr)

    results: dict[str, dict] = {name: {} for name in (["original"] if original else []) + list(predictors)}
    try:
        for batch in args.batch:
            x = crops[:batch]
            for name, p in predictors.items():
                t0 = time.perf_counter()
                p.predict(x)  # compiles / allocates for this batch size
                one_off[name][f"first_call_b{batch}_s"] = time.perf_counter() - t0
            print(f"timing batch {batch} ...", file=sys.stderr, flush=True)
            blocks = {n: block_timer(functools.partial(p.predict, x)) for n, p in predictors.items()}
            if original:
                blocks = {"original": functools.partial(original_block, original, batch), **blocks}
            for name, t in time_interleaved(blocks, args.repeats).items():
                results[name][str(batch)] = {**t, "per_image_ms": t["median_ms"] / batch}
    finally:
        if original:
            original.close()

    # accuracy[name][gain]: each backend against eager fp32 on every proxy.
    accuracy: dict[str, dict[str, dict]] = {name: {} for name in predictors}
    for gain in gains:
        if gain == gains[0]:
            proxy, built = model, predictors
        else:
            proxy = calibrated_random_hmr(body, images=crops[: min(len(crops), 8)], residual_gain=gain)
            built = {name: build(name, proxy, scratch) for name in predictors}
        ref_theta = build_backend("torch", proxy).theta(crops)
        for name, p in built.items():
            a = compare_thetas(body, ref_theta, p.theta(crops))
            accuracy[name][str(gain)] = {"vertex_mm": a.vertex_mm, "keypoint_px": a.keypoint_px,
                                         "within": a.within()}
    workdir.cleanup()

    print(f"\ncrop -> Θ -> SMPL vertices, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}; crops: {source}; load average {os.getloadavg()[0]:.1f}")
    # Without the TF environment the ratios are against eager torch, timed in this run too.
    base = "original" if original else ("torch" if "torch" in results else next(iter(results)))
    head = "| backend | " + " | ".join(
        f"batch {b} ms | per image | × {base}" for b in args.batch) + " | " + " | ".join(
        f"Δ mm / px (gain {g:g})" for g in gains) + " | one-off s |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name in results:
        cells = []
        for b in map(str, args.batch):
            r = results[name][b]
            ratio = results[base][b]["median_ms"] / r["median_ms"]
            cells += [f"{r['median_ms']:.1f}", f"{r['per_image_ms']:.1f}", f"{ratio:.2f}"]
        if name == "original":
            print("| original (TF graph) | " + " | ".join(cells) + " | – " * len(gains) + "| – |")
            continue
        acc_cells = []
        for g in gains:
            acc = accuracy[name][str(g)]
            mark = "" if acc["within"] else " ✗"
            acc_cells.append(f"{acc['vertex_mm']:.3g} / {acc['keypoint_px']:.3g}{mark}")
        first = max(v for k, v in one_off[name].items() if k.startswith("first_call"))
        print(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(acc_cells)
              + f" | {one_off[name]['build_s'] + first:.1f} |")
    print("\nbest of the repeats (min ms per batch; less affected by other processes):")
    for name in results:
        print(f"  {name:>14}: " + ", ".join(
            f"batch {b} {results[name][str(b)]['min_ms']:.1f} ms "
            f"(× {results[base][str(b)]['min_ms'] / results[name][str(b)]['min_ms']:.2f})"
            for b in args.batch))
    print(f"\n× {base}: {'TF' if original else base} median / this backend's median, same crops, "
          "interleaved blocks (higher is "
          "faster). ✗: above the 5 mm / 1 px tolerance against eager fp32 for these weights. "
          "one-off: build (export, quantise) + the slowest first call (compilation).")
    if args.json:
        args.json.write_text(json.dumps({
            "results": results, "accuracy": accuracy, "one_off": one_off,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "crops": source, "load_average": os.getloadavg(),
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
