"""The ``openhmr`` command: one sub-command per job (see ``openhmr --help``)."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import sys
import threading

from openhmr import __version__
from openhmr.errors import OpenHMRError
from openhmr.progress import line_interval

# Sub-command modules under openhmr.commands, in the order --help lists them.
COMMANDS = (
    "demo",
    "fit",
    "eval",
    "train",
    "data",
    "convert_tf",
    "convert_smpl",
    "export_onnx",
    "bench",
)


ENVIRONMENT = """\
environment variables:
  ANNY_CACHE_DIR            where the Anny body model's ~0.8 GB cache is built once
                            (default ~/.cache/openhmr/anny)
  OPENHMR_CACHE             exported ONNX graphs and other caches (default ~/.cache/openhmr)
  OPENHMR_SMPL              the SMPL file HMR.from_pretrained uses when given none
  OPENHMR_PROGRESS_SECONDS  seconds between progress lines when stderr is not a terminal
                            (default 30; 0: one per step)

'openhmr COMMAND --help' explains each command."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openhmr",
        description="Human mesh recovery from a single image (HMR, Kanazawa et al. 2018).",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"openhmr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"openhmr.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"openhmr.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; a command's KEY=VALUE overrides (``openhmr
    train``) may stand anywhere, also between options, which argparse alone
    refuses once an option has split them from the first ones."""
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "overrides", None), list) and all(
            _OVERRIDE.match(a) for a in extra):
        args.overrides = args.overrides + extra
    elif extra:
        # The (sub-)sub-command's usage line, not the top level's, says what it takes.
        chosen = parser
        while True:
            action = next((a for a in chosen._actions if isinstance(a, argparse._SubParsersAction)), None)
            name = getattr(args, action.dest, None) if action else None
            inner = action.choices.get(name) if action and name is not None else None
            if inner is None:
                break
            chosen = inner
        chosen.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def describe_os_error(error: OSError) -> str:
    """One line for a file-system error: what went wrong, and where."""
    what = error.strerror or str(error) or type(error).__name__
    where = [str(p) for p in (error.filename, error.filename2) if p is not None]
    return f"{what}: {' → '.join(where)}" if where else what


def first_line(error: BaseException) -> str:
    """An error's first non-empty line, or its type's name."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def is_out_of_memory(error: BaseException) -> bool:
    """Python's MemoryError (numpy's too), torch's CUDA OutOfMemoryError, or
    torch's CPU allocator refusing an allocation (a plain RuntimeError)."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a batch scheduler), raised where the
    program is, as Ctrl-C is: the same clean-up runs (temporary files removed,
    a half-made training run taken back)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (`openhmr bench | head -1`): stop quietly, as
        # command-line tools do, with the shell's code for SIGPIPE.
        _drop_broken_streams()
        return 128 + signal.SIGPIPE


def _drop_broken_streams() -> None:
    """Point stdout and stderr, where their reader has gone, at /dev/null, so
    that Python's flush at exit does not print 'Exception ignored … Broken
    pipe' (the recipe of Python's signal documentation)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
            except (OSError, ValueError):
                pass
        except (OSError, ValueError):
            pass


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args = parse_args(parser, argv)
    except KeyboardInterrupt:
        # Parsing a --device imports torch, which takes a second or so.
        print("openhmr: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    """The chosen command, with user errors reported on one line."""
    from openhmr.io.output_paths import new_files_only

    try:
        line_interval()  # a bad OPENHMR_PROGRESS_SECONDS fails now, not after an hour's work
        # Outputs are checked to be free before the work; without --overwrite, one that
        # another run writes meanwhile is not replaced when the result is put in place.
        with new_files_only(getattr(args, "overwrite", None) is False):
            return int(args.func(args) or 0)
    except OpenHMRError as e:
        print(f"openhmr {args.command}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise  # not a path's fault: main stops quietly
    except OSError as e:
        # A path the file system refuses (not writable, a file where a folder
        # should be, a disk full) is the user's to fix, not a bug to trace.
        print(f"openhmr {args.command}: error: {describe_os_error(e)}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as e:
        # A batch too large for the machine is the user's to change; any other
        # runtime error is a bug, and its traceback is what a report needs.
        if not is_out_of_memory(e):
            raise
        option = {"train": "batch_size=", "bench": "--batch", "export-onnx": "--batch", "demo": "--batch-size",
                  "fit": "--batch-size", "eval": "--batch-size"}.get(args.command)
        hint = f"a smaller batch size ({option}) needs less" if option else "a smaller input needs less"
        print(f"openhmr {args.command}: error: out of memory ({first_line(e)}); {hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        print(f"openhmr {args.command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
