"""The backend interface: layers ask an array for its kernels and never ask which device they are on.

`ops_of(a)` returns the kernel module for a's device (cpu.py or gpu.py, same names and signatures), `xp_of(a)` its
array module (numpy or cupy). The GPU module is imported only when a GPU array or device is first asked for.
"""
import numpy as np

from . import cpu


def _gpu_module():
    from . import gpu   # imports cupy; only reached once a GPU is requested
    return gpu


def is_host(a):
    return isinstance(a, np.ndarray)


def ops_of(a):
    """The kernel module (cpu or gpu) that works on array a."""
    return cpu if is_host(a) else _gpu_module()


def xp_of(a):
    """numpy or cupy, whichever a belongs to."""
    return np if is_host(a) else _gpu_module().xp


def to_host(a):
    """A numpy array with a's contents (a itself when already on the host)."""
    return a if is_host(a) else a.get()


def to_device(a, like):
    """a on the same device as `like`."""
    return np.asarray(a) if is_host(like) else _gpu_module().xp.asarray(a)
