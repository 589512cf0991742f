"""The GPU backend: ops.py's CudaOps (written against an array module and a kernel launcher, no CuPy), kernels.cu
(its CUDA sources), and device.py, which binds them to CuPy and is the only module of the package that imports it.
Importing this package imports nothing; backend/__init__.py imports device.py once a GPU is asked for.
"""
