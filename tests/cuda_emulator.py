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
import types

import numpy as np

from pydarknet.backend.cuda.ops import CudaOps, kernel_source

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


def shared_emulator():
    """The Emulator of this process (kernels.cu compiled once per source version)."""
    global _emulator
    if _emulator is None:
        _emulator = Emulator()
    return _emulator


def install(monkeypatch):
    """For one test: host arrays go through the GPU backend's code and kernels (skips without a C++ compiler)."""
    import pytest

    from pydarknet import backend
    if not available():
        pytest.skip("no C++ compiler (g++) to run the CUDA kernels on the CPU")
    monkeypatch.setattr(backend, "_host_ops", emulated_ops())


def emulated_ops():
    """CudaOps on numpy arrays, with kernels.cu compiled for the CPU (once per source version)."""
    return CudaOps(np, shared_emulator())


# ---- a GPU played by the CPU: device arrays that refuse to mix with host arrays, as CuPy's do ------------------

class DeviceArray(np.ndarray):
    """A numpy array playing a CuPy array on GPU 0: the backend sees a device array (it has
    __cuda_array_interface__), `.get()` copies it to the host, and using it together with a host array in an
    operation, an assignment or a kernel launch raises TypeError, as CuPy does. (np.asarray of it is not caught.)"""

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ctypes.data, False), "version": 3}

    @property
    def device(self):
        return EMULATED_DEVICE

    def get(self):
        return np.array(self.view(np.ndarray))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out") or ()
        refuse_host(inputs + tuple(out), ufunc.__name__)
        if out:
            kwargs["out"] = tuple(host_view(o) for o in out)
        result = getattr(ufunc, method)(*(host_view(a) for a in inputs), **kwargs)
        return (out[0] if len(out) == 1 else out) if out else on_device(result)

    def __array_function__(self, func, types_, args, kwargs):
        refuse_host(list(args) + list(kwargs.values()), func.__name__)
        result = func(*unwrap(args), **unwrap(kwargs))
        return kwargs["out"] if kwargs.get("out") is not None else on_device(result)

    def __setitem__(self, key, value):
        refuse_host([value], "assignment")
        super().__setitem__(unwrap(key), host_view(value))


def is_host_array(a):
    return isinstance(a, np.ndarray) and not isinstance(a, DeviceArray) and a.ndim > 0


def refuse_host(values, what):
    for v in values:
        if isinstance(v, (list, tuple)):
            refuse_host(v, what)
        elif is_host_array(v):
            raise TypeError(f"{what}: a host (numpy) array used with a GPU array; CuPy refuses this")


def host_view(a):
    return a.view(np.ndarray) if isinstance(a, DeviceArray) else a


def unwrap(value):
    if isinstance(value, (list, tuple)):
        return type(value)(unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    return host_view(value)


def on_device(result):
    if isinstance(result, tuple):
        return tuple(on_device(r) for r in result)
    return result.view(DeviceArray) if isinstance(result, np.ndarray) and result.ndim > 0 else result


class _Device:
    id = 0

    def __init__(self, index=0):
        if index != 0:
            raise RuntimeError(f"the emulated machine has one GPU, not GPU {index}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        pass


EMULATED_DEVICE = _Device()


def emulated_cupy():
    """The part of CuPy's namespace the backend uses, making DeviceArrays."""
    def device_only(name, f):
        def call(a, *args, **kwargs):
            if is_host_array(a):
                raise TypeError(f"cupy.{name}: a host (numpy) array; CuPy needs cupy.asarray first")
            return on_device(f(host_view(a), *args, **kwargs))
        return call

    def made(f):
        return lambda *args, **kwargs: on_device(f(*args, **kwargs))

    return types.SimpleNamespace(
        empty=made(np.empty), zeros=made(np.zeros),
        empty_like=device_only("empty_like", np.empty_like), zeros_like=device_only("zeros_like", np.zeros_like),
        ascontiguousarray=device_only("ascontiguousarray", np.ascontiguousarray),
        asarray=lambda a, dtype=None: on_device(np.array(host_view(a), dtype=dtype, copy=True)),
        matmul=np.matmul, concatenate=np.concatenate, where=np.where, sqrt=np.sqrt, log=np.log, abs=np.abs,
        cuda=types.SimpleNamespace(Device=_Device))


class DeviceKernels:
    """The emulator's kernels, refusing host arrays as a RawKernel does."""

    def __init__(self, emulator):
        self.emulator = emulator

    def __call__(self, name):
        launch = self.emulator(name)

        def checked(grid, block, args):
            refuse_host(args, name)
            launch(grid, block, args)
        return checked


def install_gpu(monkeypatch):
    """For one test: GPU 0 is played by the CPU (DeviceArrays, the CUDA kernels compiled for the CPU)."""
    import pytest

    from pydarknet import backend
    if not available():
        pytest.skip("no C++ compiler (g++) to run the CUDA kernels on the CPU")
    xp = emulated_cupy()
    ops = CudaOps(xp, DeviceKernels(shared_emulator()))
    gpu = types.SimpleNamespace(xp=xp, set_math=lambda mode: None, ops=ops)     # what backend uses of cuda/device.py
    monkeypatch.setattr(backend, "_gpu_module", lambda: gpu)
    monkeypatch.setattr(backend, "gpu_problem", lambda index: None if index == 0 else f"no GPU {index}")
    return gpu
