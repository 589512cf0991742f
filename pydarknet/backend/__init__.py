"""The backend interface: layers ask an array for its kernels and never ask which device they are on.

`ops_of(a)` returns the ops for a's device, the names ops.py declares with the same signatures on both: the package
cpu/ for host arrays, cuda/device.py's CudaOps object (`device.ops`) for GPU arrays. `xp_of(a)` is its array module
(numpy or cupy). The GPU module is imported only when a GPU array or device is first asked for.

Which device a new network goes to (`default_device`), Darknet-style: a `make GPU=1` build records the choice in
pydarknet/_build_config.json and then uses GPU 0; the command line's -i N picks another and -nogpu the CPU;
$PYDARKNET_GPU (`cpu` or a device index) overrides both. A GPU that cannot be used is reported in one line and
the CPU is used instead.
"""
import contextlib
import json
import pathlib
import sys

import numpy as np

from .. import settings
from ..errors import DarknetError
from . import cpu

BUILD_RECORD = pathlib.Path(__file__).resolve().parent.parent / "_build_config.json"

_host_ops = cpu         # the ops for host arrays; the tests swap in CudaOps with the CUDA kernels run on the CPU
_requested = None       # the command line's choice: "cpu" (-nogpu) or a GPU index (-i N)
_reported = set()       # fallback messages already printed


def _gpu_module():
    from .cuda import device    # imports cupy; only reached once a GPU is requested
    return device


def is_host(a):
    """True for host (numpy) arrays; a GPU array exposes __cuda_array_interface__."""
    return not hasattr(a, "__cuda_array_interface__")


def ops_of(a):
    """The ops that work on array a: the cpu package, or the GPU's CudaOps object."""
    return _host_ops if is_host(a) else _gpu_module().ops


def xp_of(a):
    """numpy or cupy, whichever a belongs to."""
    return np if is_host(a) else _gpu_module().xp


def to_host(a):
    """A numpy array with a's contents (a itself when already on the host)."""
    return a if is_host(a) else a.get()


def to_device(a, like):
    """a on the same device as `like` (a GPU array goes to the current device)."""
    return to_host(a) if is_host(like) else _gpu_module().xp.asarray(a)


def assign(target, values):
    """target[...] = values, wherever each of them lives."""
    target[...] = to_device(values, target)
    return target


# ---- devices: "cpu" or a GPU index -------------------------------------------------------------------------------

def parse_device(text, source):
    """'cpu' or a non-negative GPU index, from an environment variable or a flag; anything else is an error."""
    text = str(text).strip().lower()
    if text in ("cpu", "-1"):
        return "cpu"
    try:
        index = int(text)
    except ValueError:
        index = -1
    if index < 0:
        raise DarknetError(f"{source}: '{text}' is neither 'cpu' nor a GPU index (0, 1, ...)")
    return index


def request_device(device):
    """The command line's choice (-nogpu, -i N), used by networks built from now on unless $PYDARKNET_GPU says
    otherwise."""
    global _requested
    _requested = device


def build_wants_gpu():
    """True when the package was installed by `make GPU=1`."""
    try:
        return bool(json.loads(BUILD_RECORD.read_text()).get("gpu"))
    except (OSError, ValueError, AttributeError):
        return False


def gpu_problem(index):
    """Why GPU `index` cannot be used here, in one line; None when it can."""
    try:
        cupy = _gpu_module().xp     # cuda/device.py, the one module that imports CuPy
    except Exception as e:  # noqa: BLE001  (any import failure means the same: no CuPy)
        return f"GPU {index} requested, but CuPy cannot be imported ({_first_line(e)})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()      # without a driver: cudaErrorInsufficientDriver
    except Exception as e:  # noqa: BLE001
        return f"GPU {index} requested, but no usable GPU: {_first_line(e)}"
    if index >= count:
        return f"GPU {index} requested, but this machine has {count} GPU{'s' if count != 1 else ''}"
    return None


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def default_device():
    """Where a new network goes: $PYDARKNET_GPU, else the command line's choice, else GPU 0 in a GPU build,
    else the CPU. An unusable GPU falls back to the CPU with one line on stderr (once per reason)."""
    env = settings.gpu()
    if env:
        wanted = parse_device(env, "PYDARKNET_GPU")
    elif _requested is not None:
        wanted = _requested
    else:
        wanted = 0 if build_wants_gpu() else "cpu"
    if wanted == "cpu":
        return "cpu"
    problem = gpu_problem(wanted)
    if problem:
        if problem not in _reported:
            _reported.add(problem)
            print(f"pydarknet: {problem}; running on the CPU", file=sys.stderr)
        return "cpu"
    return wanted


def array_module(device):
    return np if device == "cpu" else _gpu_module().xp


def on_device(device):
    """A context in which new arrays and kernels are on `device` (nothing to do for the CPU)."""
    if device == "cpu":
        return contextlib.nullcontext()
    gpu = _gpu_module()
    return gpu.xp.cuda.Device(device)


def move(a, device):
    """Array a on `device` ("cpu" or a GPU index); a itself when it is there already."""
    if device == "cpu":
        return to_host(a)
    xp = _gpu_module().xp
    if not is_host(a) and a.device.id == device:
        return a
    with xp.cuda.Device(device):
        return xp.asarray(to_host(a))


def prepare_gpu(device):
    """Per-device settings before a network runs there: the GEMM math mode from $PYDARKNET_GPU_MATH. A device
    that cannot be used is one line (a CPU build has no CuPy: `make GPU=1` installs it)."""
    problem = gpu_problem(device) if isinstance(device, int) and device >= 0 else (
        f"device {device!r}: neither 'cpu' nor a GPU index (0, 1, ...)")
    if problem:
        raise DarknetError(f"{problem} (a CPU build has no CuPy: `make GPU=1` installs it)"
                           if "CuPy" in problem else problem)
    gpu = _gpu_module()
    with gpu.xp.cuda.Device(device):
        gpu.set_math(settings.gpu_math())
