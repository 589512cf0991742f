"""Every setting pydarknet reads from the environment, in one place, read when called (never at import), so that a
test or a script can change one at any time.

    PYDARKNET_THREADS                 Numba and BLAS threads (the command line's -threads overrides it)
    PYDARKNET_GPU                     cpu | N: where new networks run, over -nogpu / -i and the build record
    PYDARKNET_GPU_MATH                fp32 | tf32: cuBLAS's math mode on a GPU
    PYDARKNET_WINOGRAD_MIN_CHANNELS   3x3 stride-1 convolutions with at least this many input channels use Winograd
                                      on the CPU (a huge value turns it off)
    PYDARKNET_DIRECT_MAX_CHANNELS     3x3 stride-1 pad-1 convolutions with at most this many input channels
                                      convolve directly on the CPU, without im2col (0 turns it off)
    PYDARKNET_SPIN_US                 microseconds an idle CPU worker thread keeps looking for work before it sleeps
                                      (default 1000; 0: sleep at once, as ranks that share the cores do): threads.py's
                                      workers in inference passes, and Numba's threads through GOMP_SPINCOUNT, which
                                      `import pydarknet` sets from it (15 spins a microsecond; read once, at import)
    PYDARKNET_NCCL                    0: ranks on GPUs exchange their buffers over MPI through host memory, not
                                      NCCL (NCCL refuses two ranks on one GPU; the same numbers, slower)
    PYDARKNET_RANK_GPUS               set by the -gpus launcher (parallel/launch.py) in the ranks it starts: the
                                      GPUs, one a rank (local rank k runs on the k-th)
    PYDARKNET_TRACKER_EXPERIMENT      -tracker's experiment (default: the cfg's name); `pydarknet tune` sets it
    PYDARKNET_TRACKER_RUN             -tracker's run name (default: the cfg's name and the start time)
    MLFLOW_TRACKING_URI               -tracker mlflow's store (default: sqlite:///<run folder>/mlflow.db)
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


def nccl():
    """False where $PYDARKNET_NCCL is 0 (or off, no, false): GPU buffers then travel over MPI."""
    return os.environ.get("PYDARKNET_NCCL", "1").strip().lower() not in ("0", "off", "no", "false")


def rank_gpus():
    """$PYDARKNET_RANK_GPUS as written ("" when unset)."""
    return os.environ.get("PYDARKNET_RANK_GPUS", "").strip()


def tracker_experiment():
    """$PYDARKNET_TRACKER_EXPERIMENT, or None."""
    return os.environ.get("PYDARKNET_TRACKER_EXPERIMENT", "").strip() or None


def tracker_run():
    """$PYDARKNET_TRACKER_RUN, or None."""
    return os.environ.get("PYDARKNET_TRACKER_RUN", "").strip() or None


def mlflow_tracking_uri():
    """$MLFLOW_TRACKING_URI, or None."""
    return os.environ.get("MLFLOW_TRACKING_URI", "").strip() or None


def _channels(name, default):
    text = os.environ.get(name, default)
    try:
        return int(text)
    except ValueError:
        raise DarknetError(f"{name}={text}: not a whole number of channels") from None


def spin_us():
    text = os.environ.get("PYDARKNET_SPIN_US", "1000")
    try:
        return max(0, int(text))
    except ValueError:
        raise DarknetError(f"PYDARKNET_SPIN_US={text}: not a whole number of microseconds") from None


def winograd_min_channels():
    return _channels("PYDARKNET_WINOGRAD_MIN_CHANNELS", "64")


def direct_max_channels():
    return _channels("PYDARKNET_DIRECT_MAX_CHANNELS", "32")
