"""The Numba decorator policies; every module compiles its loops with one of these.

All cache their machine code on disk (`cache=True`: no JIT delay in every command; `make clean` clears it).
fastmath stays off, but for vector_kernel's two flags: full fastmath assumes no NaNs and infinities, which max
pooling's -inf padding and the NaN-loss stop need.
"""
import functools

import numba

# Plain compiled loops: integer-style errors (a division by zero raises), the default.
kernel = functools.partial(numba.njit, cache=True)

# Loops that must divide as C does: x/0 is inf or NaN (IEEE), never an exception (the YOLO losses).
ieee_kernel = functools.partial(numba.njit, cache=True, error_model="numpy")

# Image operations: IEEE division, and the GIL released so that the data loader's threads run them in parallel.
image_kernel = functools.partial(numba.njit, cache=True, nogil=True, error_model="numpy")

# Loops that run inside the pieces backend/cpu/threads.py shares out: serial, and the GIL released so that the pieces
# run side by side.
piece_kernel = functools.partial(numba.njit, cache=True, nogil=True)

# Loops that must become vector code (backend/cpu/direct.py's pieces): sums may be reordered and multiply-adds fused, so
# float32 results move within rounding; NaNs and infinities are still honoured (no nnan, ninf). Not for batch-norm
# statistics: Darknet's order there is visible (backend/cpu/batchnorm.py's _batch_stats).
VECTOR_MATH = {"contract", "reassoc"}
vector_kernel = functools.partial(numba.njit, cache=True, nogil=True, fastmath=VECTOR_MATH)


def light_cache_loads():
    """For the command's process: the first call of a kernel costs its load from the disk cache, not Numba's set-up.

    - Before loading a cached kernel Numba refreshes its typing and lowering registries: it imports and installs
      every implementation it has (0.2-0.3 s), which only compiling needs. Here a load initialises the runtime
      only, and the full refresh runs on a cache miss, before Numba compiles.
    - Before the first call of each kernel Numba looks through every installed package for extensions (0.02-0.03
      s); pydarknet's kernels take numpy arrays and numbers only, so here that waits for a miss too (the refresh
      does it).
    Not done on `import pydarknet`: it changes Numba for the whole process."""
    from numba.core import caching, dispatcher
    from numba.core.runtime import rtsys
    if getattr(caching.Cache.load_overload, "light", False):
        return

    def load_overload(self, sig, target_context):
        rtsys.initialize(target_context)    # what a loaded kernel needs of the refresh: the runtime's functions
        with self._guard_against_spurious_io_errors():
            loaded = self._load_overload(sig, target_context)
        if loaded is None:
            target_context.refresh()        # Numba compiles next
        return loaded

    # the private methods this leans on; a Numba without them keeps its own loads
    if hasattr(caching.Cache, "_guard_against_spurious_io_errors") and hasattr(caching.Cache, "_load_overload"):
        load_overload.light = True
        caching.Cache.load_overload = load_overload
        if hasattr(dispatcher.Dispatcher, "_compilation_chain_init_hook"):
            dispatcher.Dispatcher._compilation_chain_init_hook = lambda self: None
