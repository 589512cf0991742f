"""The op interface: every name a layer may reach through `ops_of(x).NAME`.

Two backends implement it with the same names and signatures: the package cpu/ (module functions, Numba and
numpy's BLAS) and cuda/ops.py's CudaOps (methods, cuda/kernels.cu and cuBLAS; cuda/device.py binds it to CuPy).
tests/test_gpu_backend.py checks that this list, the ops cpu/'s modules define (and cpu/__init__.py binds) and
CudaOps's are the same, and that every op the layers call is listed here.
Arrays are NCHW float32; ops that take an output array (y, dx, ...) write into it and return it.
"""

__all__ = [
    "xp",                       # the array module of the backend: numpy or cupy
    # ---- forward ----
    "bias_activate",            # y = activation(y + biases), normalized by mean/variance/scales first if given
    "activate",                 # x = activation(x), in place
    "batch_stats",              # per-channel mean and (unbiased) variance of x: Darknet's mean_cpu, variance_cpu
    "batchnorm_train",          # training batch-norm of y with the batch's statistics, keeping x and x_norm
    "im2col",                   # one image (C, H, W) -> its columns (C*size*size, out_h*out_w)
    "gemm",                     # a @ b, into out when given
    "convolution_workspace",    # floats of the network's shared workspace that this backend's convolution uses
    "convolution_forward",      # y = the convolution of x with weights (K, C/groups*size*size) [bias_activate, pool]
    "maxpool_forward",          # y = the max over each window, and argmax: the input index of each maximum
    "avgpool_forward",          # y (B, C, 1, 1) = the mean of each channel
    "upsample_forward",         # y = x repeated stride x stride times scale (reverse: summed down)
    "reorg_forward",            # y = Darknet's reorg_cpu of x (space to depth, or back with reverse)
    "shortcut_forward",         # out = activation(alpha * x + beta * add), add of any smaller or larger shape
    "local_forward",            # out = unshared weights applied to columns col, plus biases
    "softmax_forward",          # y = softmax of x per group, Darknet's batch/group/stride layout and temperature
    # ---- backward: add into the gradient arrays as Darknet does, unless an op says it overwrites ----
    "gradient",                 # delta *= activation'(y), in place
    "col2im",                   # x += the columns col folded back into one image (C, H, W)
    "convolution_backward",     # weight_updates += delta x columns^T; dx gets W^T delta (1x1: overwritten)
    "maxpool_backward",         # dx += delta routed to each window's argmax
    "local_backward",           # weight_updates += the local layer's, col_delta = its column gradient
    "shortcut_backward",        # dx += alpha * delta; source_delta += beta * delta (shapes as in the forward)
    "upsample_backward",        # dx += the upsample's gradient (reverse: the downsample's)
    "reorg_backward",           # dx = reorg of delta the other way
    "batchnorm_backward",       # bias_updates, scale_updates += their sums; delta becomes the input gradient
    "flush",                    # x's denormal values set to zero (CPU; nothing to do on a GPU)
    "zero",                     # x = 0 in place (each layer's delta before a training pass)
]
