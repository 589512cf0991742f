"""The Numba decorator policies; every module compiles its loops with one of these.

All cache their machine code on disk (`cache=True`: no JIT delay in every command; `make clean` clears it).
fastmath stays off: it assumes no NaNs and infinities, which max pooling's -inf padding and the NaN-loss stop need.
"""
import functools

import numba

# Plain compiled loops: integer-style errors (a division by zero raises), the default.
kernel = functools.partial(numba.njit, cache=True)

# Loops that must divide as C does: x/0 is inf or NaN (IEEE), never an exception (the YOLO losses).
ieee_kernel = functools.partial(numba.njit, cache=True, error_model="numpy")

# Image operations: IEEE division, and the GIL released so that the data loader's threads run them in parallel.
image_kernel = functools.partial(numba.njit, cache=True, nogil=True, error_model="numpy")

# Loops that run inside the pieces backend/threads.py shares out: serial, and the GIL released so that the pieces
# run side by side.
piece_kernel = functools.partial(numba.njit, cache=True, nogil=True)
