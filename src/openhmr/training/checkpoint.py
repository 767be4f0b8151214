"""Training checkpoints: atomic writes, the latest one, and every RNG state.

A checkpoint ``<run>/checkpoints/step_00001000.pt`` holds everything a run
needs to continue as if it had never stopped: the network and discriminator
weights (not the body model's constant buffers), both optimisers, the step,
and per DDP rank the RNG states (python, numpy's legacy global, torch CPU,
CUDA) and the data position (queue and mocap ``state_dict``s).

Files are written to a temporary name in the same folder and renamed with
``os.replace``, so a kill at any moment leaves either the old or the new
file, never a torn one. Loading uses ``torch.load(weights_only=True)``: the
file holds only tensors and plain containers.
"""

from __future__ import annotations

import errno
import os
import pickle
import random
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from openhmr.errors import OpenHMRError

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d{8,})\.pt$")
# save_checkpoint's temporary file, removed when done, left where its process was killed
_UNFINISHED = re.compile(r"^\.step_\d{8,}\.pt\.tmp-\d+$")


class CheckpointError(OpenHMRError):
    """A training checkpoint is missing, unreadable or made by another run."""


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the complete checkpoints in ``run_dir``, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (temporary file in the same folder, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            try:
                torch.save(state, f)
            except RuntimeError as e:
                # torch's writer turns a refused write into its own error about
                # stream positions ("unexpected pos ..."): say what it was.
                if "inline_container" not in str(e) and "unexpected pos" not in str(e):
                    raise
                full = shutil.disk_usage(path.parent).free < (256 << 20)
                raise OSError(errno.ENOSPC if full else errno.EIO,
                              "No space left on device" if full else "the checkpoint could not be written whole",
                              str(path)) from None
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


#: What every checkpoint openhmr writes holds.
CHECKPOINT_KEYS = ("step", "model", "e_opt", "world_size", "ranks")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint :meth:`openhmr.train.Trainer.save` wrote, as plain data.

    Raises:
        CheckpointError: unreadable, damaged, or a torch file that is not
            such a checkpoint.
    """
    try:
        with open(path, "rb"):  # a file it may not read is that, not a damaged one
            pass
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        # torch's own messages run to several lines of advice on weights_only,
        # which does not apply: a checkpoint openhmr wrote loads with it.
        if isinstance(e, pickle.UnpicklingError):
            reason = "not a torch file, or one holding more than tensors and plain data"
        elif isinstance(e, EOFError):
            reason = "empty or cut short"
        elif "zip archive" in str(e) or not zipfile.is_zipfile(path):
            # torch writes a zip; one cut short has lost its central directory
            # (miniz's long advice) or leaves a read past its end (Errno 22).
            reason = "cut short or damaged (not a whole torch zip file)"
        else:
            reason = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing or not isinstance(state["ranks"], list) or len(state["ranks"]) != state["world_size"]:
        raise CheckpointError(f"{path} is a torch file but not an openhmr training checkpoint"
                              + (f" (no {', '.join(missing)})" if missing else " (its ranks do not match)"))
    return state


def remove_unfinished(run_dir: Path) -> int:
    """Delete the temporary files of checkpoints whose writing was killed
    (SIGKILL, a node taken back: ``save_checkpoint`` cleans up otherwise);
    return the bytes freed. Only while no process of the run writes."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    freed = 0
    for path in folder.iterdir() if folder.is_dir() else ():
        if _UNFINISHED.match(path.name) and path.is_file():
            freed += path.stat().st_size
            path.unlink(missing_ok=True)
    return freed


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for _, path in list_checkpoints(run_dir)[:-keep]:
        path.unlink(missing_ok=True)


def rng_state() -> dict[str, Any]:
    """This process's random states, as plain data (tensors, ints, lists)."""
    py_version, py_state, py_gauss = random.getstate()
    # The legacy form (the default) is a tuple; the stubs also allow the dict form.
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = cast(
        tuple[str, np.ndarray, int, int, float], np.random.get_state())
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`'s output."""
    version, py_state, gauss = state["python"]
    random.setstate((int(version), tuple(int(x) for x in py_state), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
