"""User-facing errors.

Every failure a user can cause (a wrong file, an unreadable image, no person)
is an :class:`OpenHMRError` with a one-sentence message; the command line
prints that sentence and exits non-zero instead of showing a traceback.
"""

import importlib
import os
import zipfile
import zlib
from types import ModuleType

#: What ``np.load(path, allow_pickle=False)`` raises for a file that is not a
#: whole .npz: missing or unreadable (OSError), empty (EOFError), another
#: format (ValueError; ``openhmr.io.npz.open_npz`` raises it for a lone .npy
#: array too), a truncated or damaged zip (BadZipFile), a damaged compressed
#: member (zlib.error, when its array is read), a damaged compression method,
#: encryption flag or version field (zipfile's NotImplementedError).
NPZ_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError)


class OpenHMRError(Exception):
    """Base class of the errors openhmr reports to users in one line."""


class SMPLFileError(OpenHMRError):
    """A body-model file is missing, corrupt, incomplete or unsafe to load."""


class InputError(OpenHMRError):
    """A user input (image, box, keypoint file, option) cannot be used."""


class WeightsError(OpenHMRError):
    """A weight file is missing, corrupt, or made for another model."""


class NoPersonError(InputError):
    """No person in an image or video frame: the detector found none, or the
    keypoint file has none. A video skips such frames; an image fails."""


class UnreadableFrameError(NoPersonError):
    """A video frame's keypoint file cannot be read (truncated, not JSON, not
    OpenPose's): the frame counts as one without a body, and the video's
    report says how many such frames there were, as OpenPose killed while
    writing leaves its last file cut short."""


class MissingExtraError(InputError):
    """An optional package a command needs is not installed."""


def is_special_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` exists but is neither a regular file nor a folder: a
    pipe (``<(command)``, a FIFO) or a device, which openhmr does not read
    as a file (it may read a file twice)."""
    return os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path)


#: The end of a message about a path :func:`is_special_file` finds.
SPECIAL_FILE = "is a pipe or a device, not a file: save it to a file first"


def require_module(name: str, needed_for: str, install: str) -> ModuleType:
    """``import name``, or a one-line :class:`MissingExtraError` saying what
    needs it (``needed_for``) and how to install it (``install``)."""
    top = name.split(".")[0]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] != top:
            raise  # the package is there, something it imports is not: that error is the one to see
        raise MissingExtraError(f"{needed_for} needs {top}, which is not installed: {install}") from None
    except ImportError as e:
        # installed but not loadable (a missing system library such as libGL, a binary mismatch)
        raise MissingExtraError(f"{needed_for} needs {top}, which is installed but cannot be loaded "
                                f"({e})") from e


#: How to install OpenCV: it comes with the demo extra (mediapipe's opencv-contrib-python).
OPENCV_INSTALL = "pip install 'openhmr[demo]' (or pip install opencv-python-headless)"


def require_opencv(needed_for: str) -> ModuleType:
    """OpenCV's ``cv2``, or a one-line :class:`MissingExtraError`."""
    return require_module("cv2", needed_for, OPENCV_INSTALL)
