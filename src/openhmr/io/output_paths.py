"""The paths a command writes its results to: checked before the work, written atomically.

A mistyped output path should cost one line at once, not a traceback after
minutes of work; and a failed write should leave neither a half-written file
nor a temporary one behind.
"""

from __future__ import annotations

import os
import secrets
import signal
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path

from openhmr.errors import InputError


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, outermost
    first: what ``folder.mkdir(parents=True)`` will make, so that work that
    fails can take back every folder it made, not only the last."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove those of ``folders`` (as :func:`missing_folders` gives them,
    outermost first) that are empty, innermost first; a folder something else
    has written into since stays."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:  # not empty, or gone
            return


def _writable(folder: Path) -> bool:
    """Whether a file can be made in ``folder``. The permission bits say so
    for most users, but not for root, whom they never stop while a read-only
    or virtual file system (/proc, a read-only mount) still refuses: there a
    temporary file, made and removed at once, is asked for."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_output_folder(out: Path, option: str = "--out") -> None:
    """InputError unless ``out`` is a folder, or can be made one, that this
    user may write to: checked once, before any model loads, so that a
    mistyped ``--out`` is one line rather than the same error for every input."""
    out = Path(out)
    existing = _nearest_existing(out)
    if not existing.is_dir():
        where = "" if existing == out else f" ({option} {out} would be inside it)"
        raise InputError(f"{option} {existing} is a file, not a folder{where}")
    if not _writable(existing):
        raise InputError(f"{option} {out}: the folder {existing} is not writable")


def written_path(path: Path) -> Path:
    """The file a write to ``path`` replaces: the file a symbolic link points
    at, or ``path`` itself (a link to nothing included)."""
    return Path(os.path.realpath(path)) if path.is_symlink() and path.exists() else path


def check_output_file(path: Path, overwrite: bool, option: str = "output",
                      inputs: Iterable[Path] = ()) -> None:
    """InputError unless ``path`` can be written as a new file, or replaced
    with ``overwrite``: it is not a folder, not one of the command's
    ``inputs``, and its folder exists or can be made, and is writable.
    ``option`` names the path in the message (``--out``, "OUTPUT")."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; give the file's name")
    for given in inputs:
        if path.exists() and Path(given).exists() and path.samefile(given):
            raise InputError(f"{option} {path} is an input of this command; write to another file")
    if os.path.lexists(path) and not overwrite:  # a link to nothing is there too
        raise InputError(f"{path} exists; pass --overwrite to replace it")
    existing = _nearest_existing(written_path(path).parent)
    if not existing.is_dir():
        raise InputError(f"{option} {path}: {existing} is a file, not a folder")
    if not _writable(existing):
        raise InputError(f"{option} {path}: the folder {existing} is not writable")


def check_not_inside(path: Path, folder: Path | None, option: str, what: str) -> None:
    """InputError if ``path`` is an existing file under the input folder
    ``folder`` (None: no folder), whose files the command reads (``what``
    names the folder in the message): with --overwrite too, as an input is."""
    if folder is None or not Path(folder).is_dir() or not Path(path).is_file():
        return
    if Path(path).resolve().is_relative_to(Path(folder).resolve()):
        raise InputError(f"{option} {path} is a file in {what} {folder}, which this command reads; "
                         "write to another folder")


def check_distinct(paths: Mapping[str, Path | None]) -> None:
    """InputError if two of the named output paths are the same file."""
    seen: dict[Path, str] = {}
    for option, path in paths.items():
        if path is None:
            continue
        key = Path(os.path.abspath(path))
        if key in seen:
            raise InputError(f"{seen[key]} and {option} are the same file ({path}); give each its own")
        seen[key] = option


# While a ``committed_together`` block runs: what its files' commits will do,
# in order: (temporary, final path) to rename, or (None, path) to remove.
_PENDING: ContextVar[list[tuple[Path | None, Path]] | None] = ContextVar("openhmr_pending_writes", default=None)


# Inside new_files_only(): commits refuse a name another process has taken since the outputs were checked.
_NEW_ONLY: ContextVar[bool] = ContextVar("openhmr_new_files_only", default=False)


@contextmanager
def new_files_only(active: bool = True) -> Iterator[None]:
    """Within this block (when ``active``: a command run without
    ``--overwrite``), a file written with :func:`replacing` takes its name
    only if nothing has it by then. Outputs are checked to be free before the
    work; a second process writing into the same place meanwhile would
    otherwise have its files replaced silently."""
    token = _NEW_ONLY.set(active)
    try:
        yield
    finally:
        _NEW_ONLY.reset(token)


def commit_new(tmp: Path, path: Path) -> None:
    """``tmp`` takes the name ``path`` only if no file has it: a hard link
    (atomic, refused where the name exists), then the temporary removed.

    Raises:
        InputError: ``path`` exists (another run wrote it meanwhile).
    """
    taken = InputError(f"{path} was written meanwhile by another run (pass --overwrite to replace it)")
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise taken from None
    except OSError:
        # No hard link here (vfat: EPERM, a FUSE mount without them: ENOSYS, ...): looked
        # for, then renamed, a race staying possible there; a real write problem (a
        # read-only or full disk) is the rename's own error.
        if os.path.lexists(path):
            raise taken from None
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise type(e)(e.errno, e.strerror, str(path)) from None
        return
    tmp.unlink(missing_ok=True)


def _commit(tmp: Path, path: Path) -> None:
    """``tmp`` takes the name ``path``, keeping the replaced file's
    permissions; inside :func:`new_files_only`, only if nothing has it."""
    if _NEW_ONLY.get():
        commit_new(tmp, path)
        return
    try:
        with suppress(FileNotFoundError):  # nothing there yet: the new file's own mode
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is None or str(e.filename) != str(tmp):
            raise
        # The temporary name is ours; the user knows the file by its own.
        raise type(e)(e.errno, e.strerror, str(path)) from None


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block ends
    without error it replaces ``path`` (``os.replace``: a reader sees the old
    file or the new one, never half of one), and on any error it is removed.
    Its folder is made if missing. The temporary name keeps ``path``'s
    suffix, so writers that add one (``np.savez``) leave it as it is.
    Within :func:`committed_together`, the replacing waits for that block.

    A file replaced keeps its permissions (a private 0600 file stays
    private), and a symbolic link to a file keeps pointing at it: that file
    is the one replaced (a link to nothing is replaced itself)."""
    path = written_path(Path(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path, path.suffix)
    pending = _PENDING.get()
    handed_on = False
    try:
        yield tmp
        if pending is not None:
            pending.append((tmp, path))
            handed_on = True
        else:
            _commit(tmp, path)
    except OSError as e:
        if e.filename is None or str(e.filename) != str(tmp):
            raise
        raise type(e)(e.errno, e.strerror, str(path)) from None
    finally:
        # Clean-up only: an error here (the name refused) must not replace the one above.
        if not handed_on:
            with suppress(OSError):
                tmp.unlink(missing_ok=True)


def remove_when_committed(path: Path) -> None:
    """Remove ``path`` now, or within :func:`committed_together` when its
    files take their names (an earlier run's file the new ones supersede)."""
    pending = _PENDING.get()
    if pending is None:
        Path(path).unlink(missing_ok=True)
    else:
        pending.append((None, Path(path)))


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM held back until the block ends, then
    acted on as usual: for a few renames that must all happen or none (one
    landing between them left a dataset with half its shards and no
    manifest). Python's handlers are swapped, not the signal mask, since the
    process's other threads (torch's) would take a masked signal for the
    main one. Outside the main thread, where handlers cannot be set, nothing
    is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: object) -> None:
        caught.append(signum)

    # an ignored signal stays ignored (a job started with & ignores Ctrl-C): held, it
    # would be raised at the end in place of another that counts
    held = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN]
    before = {s: signal.signal(s, hold) for s in held}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        for signum in dict.fromkeys(caught):  # each once, in the order they came: the usual handlers, now
            signal.raise_signal(signum)


@contextmanager
def committed_together() -> Iterator[None]:
    """Files written with :func:`replacing` in this block take their final
    names together when it ends without error, in the order they were
    written (each ``os.replace`` atomic; the whole a few renames, not a few
    seconds of rendering), and the removals asked for with
    :func:`remove_when_committed` happen then. On any error or interrupt
    none of them happens and the temporaries are removed: an input stopped
    while its outputs were written leaves none of them, so ``--skip-existing``
    sees it as not started, not as half done. (A rename refused part-way
    leaves the earlier ones done; callers write the file that marks an input
    finished last.) Nested blocks join the outer one."""
    if _PENDING.get() is not None:
        yield
        return
    pending: list[tuple[Path | None, Path]] = []
    token = _PENDING.set(pending)
    try:
        try:
            yield
        finally:
            _PENDING.reset(token)
        with signals_deferred():  # an input's files all take their names, or none does
            while pending:
                tmp, path = pending[0]
                if tmp is None:
                    path.unlink(missing_ok=True)
                else:
                    _commit(tmp, path)
                pending.pop(0)  # only once done: a failed rename's temporary is removed below
    finally:
        for tmp, _ in pending:
            if tmp is not None:
                with suppress(OSError):
                    tmp.unlink(missing_ok=True)


NAME_MAX = 255  # bytes in one file name, on the file systems openhmr writes to


def temporary_name(path: Path, suffix: str = "") -> Path:
    """A hidden, unique name beside ``path`` to write it under first:
    ``.<name>.<random>.tmp<suffix>``, or ``.<random>.tmp<suffix>`` where
    that would be longer than a file name may be (a name of 240 characters is
    a legal output, its temporary name with 18 more is not)."""
    token = secrets.token_hex(6)
    name = f".{path.name}.{token}.tmp{suffix}"
    if len(os.fsencode(name)) > NAME_MAX:
        name = f".{token}.tmp{suffix}"
    return path.with_name(name)


def unique_names(names: Iterable[str]) -> list[str]:
    """``names`` with each repeat made distinct by ``_2``, ``_3``, ... (the
    first free): two inputs of one name must not write, and so lose, each
    other's outputs. Linear in the count: each name's next number is kept,
    not sought from 2 again (16,000 repeats took 15 s)."""
    taken: set[str] = set()
    last: dict[str, int] = {}  # name → the number its latest repeat took
    unique = []
    for name in names:
        new = name
        if new in taken:
            i = last.get(name, 1)
            while new in taken:
                i += 1
                new = f"{name}_{i}"
            last[name] = i
        taken.add(new)
        unique.append(new)
    return unique
