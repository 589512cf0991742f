"""GPU kernels: CudaOps (cuda/ops.py) bound to CuPy, kernels.cu compiled by NVRTC once per device, GEMM by cuBLAS.

`ops` is the one CudaOps object of the process, the twin of backend/cpu/ (the ops of backend/ops.py, same names and
signatures, on cupy arrays of the current device); `xp` and `set_math` are what backend/__init__.py needs besides.
Importing this module imports CuPy; backend/__init__.py does so only once a GPU is asked for.
"""
import cupy
import numpy as np

from ...errors import DarknetError
from .ops import OPTIONS, CudaOps, kernel_source

MATH_MODES = ("fp32", "tf32")

xp = cupy


class _Modules:
    """kernels.cu compiled once per device, on first use (CuPy also caches the binary on disk)."""

    def __init__(self):
        self.modules = {}
        self.functions = {}

    def __call__(self, name):
        device = cupy.cuda.runtime.getDevice()
        function = self.functions.get((device, name))
        if function is None:
            module = self.modules.get(device)
            if module is None:
                module = self.modules[device] = cupy.RawModule(code=kernel_source(), options=OPTIONS)
            function = self.functions[device, name] = module.get_function(name)
        return function


def set_math(mode):
    """fp32 (exact float32 GEMMs, the default) or tf32 (cuBLAS may use TF32 tensor cores), for the current device."""
    if mode not in MATH_MODES:
        raise DarknetError(f"PYDARKNET_GPU_MATH must be one of {', '.join(MATH_MODES)}, not '{mode}'")
    from cupy._core import _routines_linalg as linalg
    linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if mode == "tf32" else linalg.COMPUTE_TYPE_FP32)


ops = CudaOps(xp, _Modules())


def nccl():
    """cupy.cuda.nccl, for parallel/comm.py's NcclComm; ImportError where this CuPy has no NCCL."""
    if not getattr(cupy.cuda, "nccl_enabled", True):
        raise ImportError("CuPy finds no NCCL library")
    from cupy.cuda import nccl as module
    return module
