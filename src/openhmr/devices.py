"""The torch device a command or function was asked to run on, checked to be
present before any work starts."""

from __future__ import annotations

import os
import warnings

import torch

from openhmr.errors import InputError


def require_device(name: str | torch.device) -> torch.device:
    """``name`` as a torch device, present on this machine.

    Args:
        name: "cpu", "cuda", "cuda:1", "mps", ... (a :class:`torch.device` too).
    Raises:
        InputError (one line): CUDA asked for where this torch has no CUDA
        device, a CUDA index past the devices there are, MPS or another
        backend (xpu, hpu, ...) where it is not available, or the meta device. A name torch does not know is ``torch.device``'s
        RuntimeError (the command line refuses it while parsing).
    """
    with warnings.catch_warnings():  # torch's own lines for a retired name (mkldnn): the error below is one
        warnings.simplefilter("ignore")
        device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {str(name)!r} was asked for but this torch has no CUDA device")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(f"device {str(name)!r} was asked for but this machine has {count} CUDA "
                             f"device(s): cuda:0 to cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {str(name)!r} was asked for but MPS is not available here")
    elif device.type == "meta":
        raise InputError(f"device {str(name)!r} holds no values: run on cpu, cuda or mps")
    elif device.type not in ("cpu", "cuda", "mps"):
        # xpu, hpu, xla, ...: a backend this torch may not be built with, asked as torch asks it
        backend = getattr(torch, device.type, None)
        try:
            present = bool(backend.is_available()) if backend is not None else False
        except Exception:  # noqa: BLE001 - a backend missing its library fails in its own way
            present = False
        if not present:
            raise InputError(f"device {str(name)!r} was asked for but this torch has no {device.type} device")
    return device


def physical_memory_bytes() -> int | None:
    """This machine's RAM in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None
