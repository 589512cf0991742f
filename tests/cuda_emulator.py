"""kernels.cu on the CPU: compiled as C++ with the few CUDA names it uses defined, so that the GPU backend's code
(CudaOps with xp = numpy) runs and is compared with the CPU backend's on machines without a GPU.

Each launch runs one thread per block. That is correct for every kernel: the element-wise ones walk their range
with a grid-stride loop (run here as one block), channel_sum_kernel with a block-stride loop per channel block.
Arguments are checked against the kernel's C signature (dtype, contiguity, scalar type), which is where a cupy
RawKernel call would otherwise go silently wrong.
"""
import ctypes
import hashlib
import pathlib
import re
import shutil
import subprocess
import tempfile

import numpy as np

from pydarknet.backend.cuda import CudaOps, kernel_source

HEADER = r"""
#include <math.h>
#include <algorithm>
using std::max;
using std::min;
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
struct emulated_dim3 { unsigned x, y, z; };
static emulated_dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
static inline void __syncthreads() {}
extern "C" void emulator_set_block(unsigned block, unsigned grid) { blockIdx.x = block; gridDim.x = grid; }
"""

PER_BLOCK = {"channel_sum_kernel"}          # kernels whose blocks do different work: run each block
ROW_STRIDED = {"softmax_kernel"}            # kernels that take rows of a wider array (last axis contiguous)
SCALARS = {"int": (np.int32, ctypes.c_int), "long long": (np.int64, ctypes.c_longlong),
           "float": (np.float32, ctypes.c_float)}
POINTERS = {"float": np.float32, "long long": np.int64}


def available():
    return shutil.which("g++") is not None


def signatures(source):
    """{kernel: [(C type, is_pointer, name), ...]} from the extern "C" declarations."""
    found = {}
    for name, params in re.findall(r'extern "C" __global__ void (\w+)\(([^)]*)\)', source):
        args = []
        for p in params.split(","):
            p = " ".join(p.replace("const ", "").split())
            pointer = "*" in p
            ctype, arg = [t.strip() for t in p.replace("*", " ").rsplit(" ", 1)]
            args.append((ctype, pointer, arg))
        found[name] = args
    return found


class Emulator:
    def __init__(self):
        source = kernel_source()
        digest = hashlib.sha1((HEADER + source).encode()).hexdigest()[:16]
        library = pathlib.Path(tempfile.gettempdir()) / f"pydarknet-cuda-emulator-{digest}.so"
        if not library.exists():
            with tempfile.TemporaryDirectory() as tmp:
                src = pathlib.Path(tmp) / "kernels.cpp"
                src.write_text(HEADER + source)
                built = pathlib.Path(tmp) / "kernels.so"
                subprocess.run(["g++", "-O2", "-shared", "-fPIC", "-o", str(built), str(src)], check=True,
                               capture_output=True, text=True)
                shutil.move(str(built), library)
        self.lib = ctypes.CDLL(str(library))
        self.signatures = signatures(source)
        self.launches = []      # kernel names in launch order, for tests that want to see what ran

    def __call__(self, name):
        params = self.signatures[name]
        function = getattr(self.lib, name)

        def launch(grid, block, args):
            assert len(args) == len(params), f"{name}: {len(args)} arguments for {len(params)} parameters"
            converted = []
            for value, (ctype, pointer, arg) in zip(args, params):
                where = f"{name}({arg})"
                if pointer:
                    assert isinstance(value, np.ndarray), f"{where}: an array, not {type(value).__name__}"
                    assert value.dtype == POINTERS[ctype], f"{where}: {ctype} array, not {value.dtype}"
                    if name in ROW_STRIDED:
                        assert value.ndim < 2 or value.shape[-1] < 2 or value.strides[-1] == value.itemsize, where
                    else:
                        assert value.flags.c_contiguous, f"{where}: the array is not contiguous"
                    converted.append(ctypes.c_void_p(value.ctypes.data))
                else:
                    dtype, c = SCALARS[ctype]
                    assert type(value) is dtype, f"{where}: {dtype.__name__} expected, got {type(value).__name__}"
                    converted.append(c(value.item()))
            self.launches.append(name)
            blocks = grid[0] if name in PER_BLOCK else 1
            for b in range(blocks):
                self.lib.emulator_set_block(b, blocks)
                function(*converted)
        return launch


_emulator = None


def install(monkeypatch):
    """For one test: host arrays go through the GPU backend's code and kernels (skips without a C++ compiler)."""
    import pytest

    from pydarknet import backend
    if not available():
        pytest.skip("no C++ compiler (g++) to run the CUDA kernels on the CPU")
    monkeypatch.setattr(backend, "_host_ops", emulated_ops())


def emulated_ops():
    """CudaOps on numpy arrays, with kernels.cu compiled for the CPU (once per source version)."""
    global _emulator
    if _emulator is None:
        _emulator = Emulator()
    return CudaOps(np, _emulator)
