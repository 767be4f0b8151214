"""Score predictions on a benchmark and report them the way the papers do.

``score(benchmark, predictions)`` computes per-frame metrics with
:mod:`openhmr.metrics` (millimetres; PCK and AUC in percent) and breaks them
down by the benchmark's grouping levels; :class:`Report` prints the table and
writes ``metrics.csv`` and ``metrics.json``.

Summaries, for every metric:

* per group (action, sequence, activity, joint): the group's mean — for a
  level with a ``mean_of`` finer level (H36M actions), the mean of its
  sequences' means, as HMR computes it — and the median over its frames;
* ``mean over <level>``: the unweighted mean of the group means of the
  benchmark's headline level (H36M: over the 15 actions, HMR's headline);
* ``all frames``: mean and median over all scored frames pooled (the
  headline of 3DPW and MPI-INF-3DHP; for PCK/AUC this pools all joints of all
  frames, as ``mpii_compute_3d_pck.m`` does).

For LSP the scored items are the (image, joint) pairs, all 14 joints of every
test image as the published PCK scores them, grouped by joint; ``all joints``
is the PCK over them, ``visible joints`` over those LSP marks visible.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
from torch import Tensor

from openhmr import metrics as M
from openhmr.body.keypoints import get_set
from openhmr.errors import InputError
from openhmr.evaluate.benchmark import Benchmark
from openhmr.evaluate.mpi_inf_3dhp import ROOT_17, h36m17_to_3dhp17, lsp14_from_17
from openhmr.evaluate.predictions import Predictions
from openhmr.io.output_paths import replacing

# Metrics whose median is worth printing (the errors; PCK medians are not).
_ERROR_METRICS = ("MPJPE", "PA-MPJPE", "PVE")
#: The files :meth:`Report.write` writes into its folder.
METRICS_FILES = ("metrics.csv", "metrics.json")


@dataclass
class Report:
    """Scores of one benchmark run.

    Attributes:
        protocol: the protocol name.
        columns: metric names, in display order.
        values: metric → (N,) per-frame (per-item for LSP) values.
        breakdown: level → group → metric → :class:`openhmr.metrics.Stats`.
        overall: summary row name → metric → value.
        settings: what the reader and runner chose.
    """

    protocol: str
    columns: list[str]
    values: dict[str, np.ndarray]
    breakdown: dict[str, dict[str, dict[str, M.Stats]]]
    overall: dict[str, dict[str, float]]
    settings: dict[str, object] = field(default_factory=dict)

    # -- presentation ---------------------------------------------------

    def _header(self) -> list[str]:
        cols = []
        for c in self.columns:
            cols.append(c)
            if c.split("-17")[0].split("-14")[0] in _ERROR_METRICS:
                cols.append(f"{c} med")
        return cols

    def _row(self, per_metric: dict[str, M.Stats]) -> list[str]:
        cells = []
        for c in self.columns:
            s = per_metric[c]
            cells.append(f"{s.mean:.2f}")
            if c.split("-17")[0].split("-14")[0] in _ERROR_METRICS:
                cells.append(f"{s.median:.2f}")
        return cells

    def table(self) -> str:
        """The report as fixed-width text: one block per level, then the summary."""
        header = self._header()
        lines: list[str] = []

        def block(title: str, rows: list[tuple[str, str, list[str]]]) -> None:
            width = max(len(title), *(len(r[0]) for r in rows)) + 2
            lines.append(f"{title:<{width}}{'n':>8}" + "".join(f"{h:>14}" for h in header))
            for name, count, cells in rows:
                lines.append(f"{name:<{width}}{count:>8}" + "".join(f"{c:>14}" for c in cells))
            lines.append("")

        for level, groups in self.breakdown.items():
            block(level, [(g, str(next(iter(m.values())).count), self._row(m))
                          for g, m in groups.items()])
        summary = []
        for name, row in self.overall.items():
            cells = []
            for c in self.columns:
                cells.append(f"{row[c]:.2f}")
                if c.split("-17")[0].split("-14")[0] in _ERROR_METRICS:
                    cells.append("")
            counts = self.settings.get("joints_scored", {})  # LSP: a count per summary row
            count = counts.get(name, "") if isinstance(counts, dict) and counts else self.settings.get("frames", "")
            summary.append((name, str(count), cells))
        block("overall", summary)
        return "\n".join(lines).rstrip() + "\n"

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "units": "mm for errors, percent for PCK and AUC",
            "settings": self.settings,
            "overall": self.overall,
            "breakdown": {
                level: {
                    g: {"frames": next(iter(m.values())).count,
                        **{c: {"mean": s.mean, "median": s.median} for c, s in m.items()}}
                    for g, m in groups.items()
                }
                for level, groups in self.breakdown.items()
            },
        }

    def write(self, out_dir: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
        """Write ``metrics.csv`` and ``metrics.json`` into ``out_dir``.

        Raises:
            InputError: a file exists and ``overwrite`` is False.
        """
        out = Path(out_dir)
        csv_path, json_path = (out / name for name in METRICS_FILES)
        for p in (csv_path, json_path):
            if p.exists() and not overwrite:
                raise InputError(f"{p} exists; pass --overwrite to replace it or choose another --out")
        with replacing(csv_path) as tmp, tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["level", "group", "frames", "metric", "mean", "median"])
            for level, groups in self.breakdown.items():
                for g, m in groups.items():
                    for c in self.columns:
                        s = m[c]
                        w.writerow([level, g, s.count, c, f"{s.mean:.6f}", f"{s.median:.6f}"])
            for name, row in self.overall.items():
                for c in self.columns:
                    w.writerow(["overall", name, self.settings.get("frames", ""), c,
                                f"{row[c]:.6f}", ""])
        with replacing(json_path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2, default=_jsonable) + "\n")
        return csv_path, json_path


def _jsonable(x: object) -> object:
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return str(x)


# -- scoring ---------------------------------------------------------------

def frame_metrics(bench: Benchmark, preds: Predictions, batch_size: int = 1024) -> dict[str, np.ndarray]:
    """Per-frame metrics (mm; PCK/AUC in percent) of a 3D benchmark."""
    if bench.joints is None:
        raise ValueError("frame_metrics needs a 3D benchmark")
    if preds.joints14 is None:
        raise InputError("the predictions hold no 3D joints")
    n = len(bench)
    out: dict[str, list[np.ndarray]] = {}

    def add(name: str, value: Tensor | np.ndarray) -> None:
        out.setdefault(name, []).append(np.asarray(M.as_tensor(value).cpu().numpy()))

    pred_vertices, gt_vertices = preds.vertices, bench.gt_vertices
    is_3dhp = bench.joint_set == "mpi3dhp17"
    for start in range(0, n, batch_size):
        sl = slice(start, min(start + batch_size, n))
        gt = bench.joints[sl]
        gt14 = gt[:, lsp14_from_17()] if is_3dhp else gt
        p14 = preds.joints14[sl]
        err = M.joint_errors(p14, gt14, M.LSP_PELVIS)
        pa_err = M.pa_joint_errors(p14, gt14, M.LSP_PELVIS)
        add("MPJPE", err.mean(-1))
        add("PA-MPJPE", pa_err.mean(-1))
        if pred_vertices is not None and gt_vertices is not None:
            idx = np.arange(sl.start, sl.stop)
            truth = gt_vertices(idx)
            if truth.shape[1:] != pred_vertices.shape[1:]:  # another mesh (Anny's, SMPL-X's) has no PVE here
                raise InputError(f"the predicted 'vertices' hold {pred_vertices.shape[1]} vertices per body; "
                                 f"{bench.protocol}'s PVE compares SMPL meshes of {truth.shape[1]} "
                                 "(leave 'vertices' out to score the joints alone)")
            add("PVE", M.pve(pred_vertices[sl], truth, p14, gt14, M.LSP_PELVIS))
        if is_3dhp:
            add("PCK", 100.0 * M.pck_from_errors(err))
            add("AUC", 100.0 * M.auc_from_errors(err))
            add("PA-PCK", 100.0 * M.pck_from_errors(pa_err))
            add("PA-AUC", 100.0 * M.auc_from_errors(pa_err))
            if preds.joints_h36m17 is not None:
                p17 = preds.joints_h36m17[sl][:, h36m17_to_3dhp17()]
                err17 = M.joint_errors(p17, gt, ROOT_17)
                add("MPJPE-17", err17.mean(-1))
                add("PCK-17", 100.0 * M.pck_from_errors(err17))
                add("AUC-17", 100.0 * M.auc_from_errors(err17))
    return {k: np.concatenate(v) for k, v in out.items()}


def _summaries(
    values: dict[str, np.ndarray], bench_groups: dict[str, list[str]], levels: tuple[str, ...],
    mean_of: dict[str, str], headline: str | None,
) -> tuple[dict[str, dict[str, dict[str, M.Stats]]], dict[str, dict[str, float]]]:
    breakdown: dict[str, dict[str, dict[str, M.Stats]]] = {}
    for level in levels:
        labels = bench_groups[level]
        sub = bench_groups.get(mean_of[level]) if level in mean_of else None
        per_metric = {c: M.group_stats(v, labels, sub) for c, v in values.items()}
        breakdown[level] = {g: {c: per_metric[c][g] for c in values} for g in dict.fromkeys(labels)}
    overall: dict[str, dict[str, float]] = {}
    if headline is not None:
        overall[f"mean over {headline}s"] = {
            c: M.mean_over_groups({g: m[c] for g, m in breakdown[headline].items()}) for c in values
        }
    overall["all frames (mean)"] = {c: M.summarise(v).mean for c, v in values.items()}
    overall["all frames (median)"] = {c: M.summarise(v).median for c, v in values.items()}
    return breakdown, overall


def score(bench: Benchmark, preds: Predictions) -> Report:
    """Score aligned predictions on a benchmark (3D protocols and LSP)."""
    settings = {"protocol": bench.protocol, **bench.settings}
    if bench.protocol == "lsp":
        return _score_lsp(bench, preds, settings)
    values = frame_metrics(bench, preds)
    breakdown, overall = _summaries(values, bench.groups, bench.levels, bench.mean_of, bench.headline)
    settings["frames"] = len(bench)
    return Report(bench.protocol, list(values), values, breakdown, overall, settings)


def _score_lsp(bench: Benchmark, preds: Predictions, settings: dict) -> Report:
    """LSP's PCK as published: every one of the 14 joints of the 1000 test
    images is scored, occluded ones too (LSP annotates their positions); the
    visible joints alone are a second summary row."""
    if preds.keypoints2d is None:
        raise InputError("LSP's PCK needs 2D keypoint predictions")
    if bench.keypoints2d is None or bench.visible is None or bench.reference_length is None:
        raise ValueError("LSP's PCK needs a 2D benchmark")
    # settings holds what the reader chose; the LSP reader stores alpha as a number.
    alpha = float(cast(float, bench.settings.get("alpha", 0.2)))
    every = np.ones(bench.visible.shape, dtype=bool)
    correct, _ = M.pck2d_correct(preds.keypoints2d, bench.keypoints2d, bench.reference_length, every, alpha)
    names = get_set("lsp14").names
    items = 100.0 * correct.numpy().reshape(-1).astype(np.float64)  # frame-major: 14 joints a frame
    column = f"PCK@{alpha:g}"
    values = {column: items}
    groups = {"joint": [names[j] for j in np.tile(np.arange(len(names)), len(bench))]}
    breakdown, overall = _summaries(values, groups, ("joint",), {}, None)
    # Order the joints as LSP does, and drop the median row (a median of 0/100 decisions).
    breakdown["joint"] = {n: breakdown["joint"][n] for n in names if n in breakdown["joint"]}
    visible = bench.visible.reshape(-1).astype(bool)
    overall = {"all joints": overall["all frames (mean)"],
               "visible joints": {column: float(items[visible].mean()) if visible.any() else float("nan")}}
    settings["frames"] = len(bench)
    settings["joints_scored"] = {"all joints": int(items.size), "visible joints": int(visible.sum())}
    return Report(bench.protocol, [column], values, breakdown, overall, settings)


def format_headline(report: Report) -> str:
    """One line with the protocol's headline numbers: its first summary row
    and, where that is a mean over groups (H36M's over actions), the mean over
    all frames too — the average the released HMR model's figures are
    (``evaluate_h36m.py``'s last line)."""
    rows = list(report.overall.items())[:1]
    if rows[0][0].startswith("mean over ") and "all frames (mean)" in report.overall:
        rows.append(("all frames (mean)", report.overall["all frames (mean)"]))
    return f"{report.protocol}: " + "; ".join(
        f"{label}: " + ", ".join(f"{c} {v:.2f}" for c, v in values.items()) for label, values in rows)
