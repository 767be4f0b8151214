"""Shared fixtures: the synthetic SMPL model and the optional ../shared folder."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# The tests of Ctrl-C send SIGINT and expect Python's usual KeyboardInterrupt.
# A process started in the background by a non-interactive shell (`cmd &`)
# inherits SIGINT ignored, and Python then leaves it ignored: restore it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _progress_lines_start_afresh():
    """Each test's progress reports time their lines from its own first
    report, as a command's process does: the clock the reports of a process
    share (``openhmr.progress.PROCESS_LINES``) would otherwise carry an
    earlier test's time into this one's output."""
    from openhmr.progress import PROCESS_LINES

    PROCESS_LINES.last = None
    yield


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repository (reference files); skips when absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not beside the repository (reference files unavailable)")
    return SHARED


@pytest.fixture(scope="session")
def smpl_arrays():
    from openhmr.body.synthetic import synthetic_smpl_arrays

    return synthetic_smpl_arrays()


@pytest.fixture(scope="session")
def smpl_npz(tmp_path_factory, smpl_arrays) -> Path:
    from openhmr.io.smpl_file import save_smpl_npz

    path = tmp_path_factory.mktemp("smpl") / "synthetic_smpl.npz"
    save_smpl_npz(path, smpl_arrays)
    return path


@pytest.fixture(scope="session")
def smpl_model(smpl_arrays):
    from openhmr.body import SMPL

    return SMPL(smpl_arrays)


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's ResNet passes on one thread (``pytestmark =
    pytest.mark.usefixtures("one_thread")``): on a shared, busy CPU,
    multi-threaded oneDNN convolutions spin and run several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def seeded_randomness():
    """Every test starts from the same random state (torch, numpy, random),
    whatever ran before it: a test drawing unseeded inputs is then one fixed
    case, not a different case on every CI run (one such flip test had
    failed 14 % of runs)."""
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
