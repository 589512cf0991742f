"""CPU kernels: Numba loops for the structural work, numpy's BLAS for GEMM, in modules named after Darknet's files.

    activations.py   activate, gradient, bias_activate (normalize, scale, bias and activation fused), flush
    batchnorm.py     batch_stats (mean_cpu, variance_cpu), batchnorm_train, batchnorm_backward
    im2col.py        im2col, col2im (in this package's namespace `im2col` is the op, which hides its module)
    convolution.py   gemm, convolution_workspace, convolution_forward, convolution_backward, local_forward, _backward
    pooling.py       maxpool_forward, maxpool_backward, avgpool_forward
    blas.py          shortcut_forward, _backward, upsample_forward, _backward, reorg_forward, _backward,
                     softmax_forward, zero
    winograd.py direct.py threads.py    convolution.py's helpers (3x3 convolutions, the GEMMs on pydarknet's threads)
    sgemm.py                            numpy's cblas_sgemm inside Numba's parallel loops (one pool for inference)
    simd.py                             eight-float vector registers for direct.py's loops

This package binds exactly the ops that ops.py declares (and nothing else); each has a twin of the same name and
signature in cuda/ops.py's CudaOps (the GPU backend), and everything else in the modules is private. Arrays are NCHW
float32, Darknet's memory order. 3x3 convolutions with many channels go through winograd.py. Arithmetic follows
Darknet's C: where C promotes a float to double (exp, sqrt, `.1*x`), so do we, and round back to float32 where C
stores the result.
"""
import numpy as xp      # the array module these ops work on

from .activations import activate, bias_activate, flush, gradient
from .batchnorm import batch_stats, batchnorm_backward, batchnorm_train
from .blas import (reorg_backward, reorg_forward, shortcut_backward, shortcut_forward, softmax_forward,
                   upsample_backward, upsample_forward, zero)
from .convolution import (convolution_backward, convolution_forward, convolution_workspace, gemm, local_backward,
                          local_forward)
from .im2col import col2im, im2col
from .pooling import avgpool_forward, maxpool_backward, maxpool_forward
