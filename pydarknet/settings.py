"""Every setting pydarknet reads from the environment, in one place, read when called (never at import), so that a
test or a script can change one at any time.

    PYDARKNET_THREADS                 Numba and BLAS threads (the command line's -threads overrides it)
    PYDARKNET_GPU                     cpu | N: where new networks run, over -nogpu / -i and the build record
    PYDARKNET_GPU_MATH                fp32 | tf32: cuBLAS's math mode on a GPU
    PYDARKNET_WINOGRAD_MIN_CHANNELS   3x3 stride-1 convolutions with at least this many input channels use Winograd
                                      on the CPU (a huge value turns it off)
    PYDARKNET_DIRECT_MAX_CHANNELS     3x3 stride-1 pad-1 convolutions with at most this many input channels
                                      convolve directly on the CPU, without im2col (0 turns it off)
"""
import os

from .errors import DarknetError


def threads():
    """$PYDARKNET_THREADS as text, or None."""
    return os.environ.get("PYDARKNET_THREADS") or None


def gpu():
    """$PYDARKNET_GPU as written ("" when unset); backend.parse_device checks it."""
    return os.environ.get("PYDARKNET_GPU", "").strip()


def gpu_math():
    return os.environ.get("PYDARKNET_GPU_MATH", "fp32")


def _channels(name, default):
    text = os.environ.get(name, default)
    try:
        return int(text)
    except ValueError:
        raise DarknetError(f"{name}={text}: not a whole number of channels") from None


def winograd_min_channels():
    return _channels("PYDARKNET_WINOGRAD_MIN_CHANNELS", "64")


def direct_max_channels():
    return _channels("PYDARKNET_DIRECT_MAX_CHANNELS", "32")
