"""The GPU backend's operations, written against an array module and a kernel launcher: kernels.cu and CudaOps.

device.py binds CudaOps to CuPy (kernels.cu compiled by NVRTC, GEMM through cuBLAS). CudaOps's public names are
exactly the ops that backend/ops.py declares, each defined here by name: a method that is the twin of the backend/cpu/
function of the same name and signature, working on cupy arrays of the current device (and `xp`, the array module).
The arithmetic is cpu/'s; where the GPU sums in another order (GEMM, per-channel reductions) the results agree within
float32 rounding. Because CudaOps takes its array module and kernel launcher as arguments, the tests also run it
on the CPU (tests/cuda_emulator.py: kernels.cu compiled with a C++ compiler, arrays that play CuPy's).

Convolutions run batched: the columns of many images at once (rows C*size*size, then image, then position), one
GEMM per chunk of images, instead of cpu/convolution.py's image by image. PYDARKNET_GPU_MATH=tf32 lets cuBLAS use
TF32 tensor cores for float32 GEMMs (opt-in, like Darknet's CUDNN_HALF); the default is exact float32.

Nothing here imports CuPy, so the sources can be compiled and the code tested on machines without it.
"""
import pathlib
import re

import numpy as np

from ...activations import ACTIVATIONS, LINEAR

SOURCE_PATH = pathlib.Path(__file__).with_name("kernels.cu")
OPTIONS = ("--std=c++14", "--fmad=false")     # no fused multiply-adds: the element-wise kernels round as cpu/ does
BLOCK = 256             # threads per block; channel_sum_kernel's shared array holds this many partial sums
MAX_GRID = 1 << 16      # blocks per launch; the grid-stride loops cover the rest
COLUMN_FLOATS = 1 << 28     # convolution columns per chunk of images (1 GiB)

I, L, F = np.int32, np.int64, np.float32     # noqa: E741  (the kernels' int, long long and float arguments)


def kernel_source():
    """kernels.cu with the activation codes of activations.py #defined in front."""
    defines = "".join(f"#define {name.upper()} {code}\n" for code, name in enumerate(ACTIVATIONS))
    return defines + SOURCE_PATH.read_text()


def kernel_names(source=None):
    return re.findall(r'extern "C" __global__ void (\w+)\(', source or kernel_source())


class CudaOps:
    """The GPU backend's operations on arrays of `xp`, launching kernels by name through `kernel(name)`, which
    returns a callable (grid, block, args) as cupy's RawKernel is."""

    def __init__(self, xp, kernel):
        self.xp = xp            # the op `xp`: the array module (cupy, or numpy in the tests' emulator)
        self._kernel = kernel

    def _launch(self, name, n, *args):
        """A grid-stride kernel over n items."""
        if n > 0:
            self._kernel(name)((min((n + BLOCK - 1) // BLOCK, MAX_GRID),), (BLOCK,), args)

    def _channel_sum(self, a, mode, b=None, center=None):
        """Per-channel sums of a (B, C, N) (see channel_sum_kernel for the modes)."""
        batch, channels, size = a.shape
        out = self.xp.empty(channels, np.float32)
        self._kernel("channel_sum_kernel")((channels,), (BLOCK,), (
            a, a if b is None else b, out if center is None else center, I(mode), I(batch), I(channels), L(size),
            out))
        return out

    # ---- forward ---------------------------------------------------------------------------------------------

    def bias_activate(self, y, biases, activation, scales=None, mean=None, variance=None):
        normalize = scales is not None
        if not normalize:
            scales = mean = variance = biases
        channels = y.shape[1]
        self._launch("bias_activate_kernel", y.size, y, mean, variance, scales, biases, I(normalize), I(activation),
                     I(channels), L(y.size // (y.shape[0] * channels)), L(y.size))
        return y

    def activate(self, x, activation):
        flat = x if x.flags.c_contiguous else self.xp.ascontiguousarray(x)
        self._launch("activate_kernel", flat.size, flat, L(flat.size), I(activation))
        if flat is not x:
            x[...] = flat
        return x

    def batch_stats(self, x, replicas=None):
        """Darknet's mean_cpu and variance_cpu; with replicas (synchronised batch-norm) each sum is summed over
        them (`replicas.sum`) and divided by every replica's count."""
        shaped = x.reshape(x.shape[0], x.shape[1], -1)
        count = shaped.shape[0] * shaped.shape[2]
        total = self._channel_sum(shaped, 0)
        if replicas is not None:
            total, count = replicas.sum(total), count * replicas.size
        mean = total * F(1.0 / count)
        squares = self._channel_sum(shaped, 1, center=mean)
        if replicas is not None:
            squares = replicas.sum(squares)
        return mean, squares * F(1.0 / (count - 1))

    def batchnorm_train(self, y, mean, variance, scales, biases, activation, x=None, x_norm=None):
        if x is None or x.shape != y.shape:
            x, x_norm = self.xp.empty_like(y), self.xp.empty_like(y)
        self._launch("batchnorm_train_kernel", y.size, y, mean, variance, scales, biases, I(activation), x, x_norm,
                     I(y.shape[1]), L(y.size // (y.shape[0] * y.shape[1])), L(y.size))
        return x, x_norm

    def _im2col(self, x, channel_offset, channels, size, stride, pad, out_h, out_w, col):
        batch, in_channels, height, width = x.shape
        self._launch("im2col_kernel", col.size, x, I(batch), I(in_channels), I(channel_offset), I(channels),
                     I(height), I(width), I(size), I(stride), I(pad), I(out_h), I(out_w), col)
        return col

    def im2col(self, x, size, stride, pad, out_h, out_w, workspace=None):
        """im2col_cpu for one image x (C, H, W) -> (C*size*size, out_h*out_w)."""
        rows = x.shape[0] * size * size
        n = rows * out_h * out_w
        col = self.xp.empty(n, np.float32) if workspace is None or workspace.size < n else workspace[:n]
        self._im2col(x[None], 0, x.shape[0], size, stride, pad, out_h, out_w, col)
        return col.reshape(rows, out_h * out_w)

    def gemm(self, a, b, out=None):
        return self.xp.matmul(a, b, out=out)

    def _columns(self, x, group, channels, size, stride, pad, out_h, out_w):
        """The columns of images x (B, C, H, W), group `group` of `channels` channels: (rows, B*out_h*out_w)."""
        batch = x.shape[0]
        if size == 1 and stride == 1 and pad == 0:
            part = x[:, group * channels:(group + 1) * channels].reshape(batch, channels, -1)
            return self.xp.ascontiguousarray(part.transpose(1, 0, 2)).reshape(channels, -1)
        col = self.xp.empty(channels * size * size * batch * out_h * out_w, np.float32)
        self._im2col(x, group * channels, channels, size, stride, pad, out_h, out_w, col)
        return col.reshape(channels * size * size, -1)

    def _column_chunks(self, x, filters, size, stride, pad, groups, out_h, out_w):
        """For each chunk of images (so that its columns stay within COLUMN_FLOATS) and each group: the image
        slice, the group's filter and channel slices, and the columns."""
        batch, channels = x.shape[:2]
        cg, kg = channels // groups, filters // groups
        chunk = max(1, min(batch, COLUMN_FLOATS // max(cg * size * size * out_h * out_w, 1)))
        for b0 in range(0, batch, chunk):
            images = slice(b0, min(b0 + chunk, batch))
            for g in range(groups):
                yield (images, slice(g * kg, (g + 1) * kg), slice(g * cg, (g + 1) * cg),
                       self._columns(x[images], g, cg, size, stride, pad, out_h, out_w))

    def convolution_workspace(self, channels, height, width, filters, size, stride, pad, groups, batch=1,
                              training=False):
        """None of the network's shared workspace: the convolutions here make their own columns, per chunk."""
        return 0

    def convolution_forward(self, x, weights, size, stride, pad, groups, y, workspace=None, derived=None,
                            epilogue=None, pool=False):
        """y = the convolution of x (B, C, H, W) with weights (K, C/groups*size*size), batched per chunk; then
        bias_activate(y, *epilogue) where one is given; with `pool`, y gets the 2x2 stride-2 max pool of that."""
        if pool:
            full = self.xp.empty(y.shape[:2] + (2 * y.shape[2], 2 * y.shape[3]), np.float32)
            self.convolution_forward(x, weights, size, stride, pad, groups, full, workspace, derived, epilogue)
            self.maxpool_forward(full, 2, 2, 0, y, with_argmax=False)
            return y
        out_h, out_w = y.shape[2:]
        for images, group_filters, _, col in self._column_chunks(x, weights.shape[0], size, stride, pad, groups,
                                                                 out_h, out_w):
            product = self.xp.matmul(weights[group_filters], col)
            nb = images.stop - images.start
            y[images, group_filters] = product.reshape(-1, nb, out_h, out_w).transpose(1, 0, 2, 3)
        if epilogue is not None:
            self.bias_activate(y, *epilogue)
        return y

    def maxpool_forward(self, x, size, stride, pad, y, with_argmax=True, argmax=None):
        """Returns the argmax whatever with_argmax says: on the GPU it costs next to nothing."""
        if argmax is None or argmax.shape != y.shape:
            argmax = self.xp.empty(y.shape, np.int64)
        batch, channels, height, width = x.shape
        self._launch("maxpool_kernel", y.size, x, I(batch), I(channels), I(height), I(width), I(size), I(stride),
                     I(pad), I(y.shape[2]), I(y.shape[3]), y, argmax)
        return y, argmax

    def avgpool_forward(self, x, y):
        shaped = x.reshape(x.shape[0], x.shape[1], -1)
        y.reshape(y.shape[0], -1)[...] = shaped.sum(axis=2, dtype=np.float32) / F(shaped.shape[2])
        return y

    def upsample_forward(self, x, stride, scale, reverse, y):
        batch, channels, height, width = x.shape
        if reverse:
            self._launch("downsample_kernel", y.size, x, I(batch), I(channels), I(height), I(width), I(stride),
                         F(scale), I(y.shape[2]), I(y.shape[3]), y)
        else:
            self._launch("upsample_kernel", y.size, x, I(batch), I(channels), I(height), I(width), I(stride),
                         F(scale), y)
        return y

    def _reorg(self, x, shape, stride, forward, out):
        batch, c, h, w = shape
        self._launch("reorg_kernel", x.size, x, I(w), I(h), I(c), I(batch), I(stride), I(forward), out)
        return out

    def reorg_forward(self, x, stride, reverse, y):
        return self._reorg(x, x.shape, stride, bool(reverse), y)

    def _shortcut(self, add, alpha, beta, out):
        batch, c1, h1, w1 = add.shape
        _, c2, h2, w2 = out.shape
        n = batch * min(c1, c2) * min(h1, h2) * min(w1, w2)
        self._launch("shortcut_kernel", n, add, I(batch), I(c1), I(h1), I(w1), F(alpha), F(beta), I(c2), I(h2),
                     I(w2), out)

    def shortcut_forward(self, x, add, alpha, beta, activation, out):
        if add.shape == out.shape:
            self._launch("shortcut_same_kernel", out.size, x, add, F(alpha), F(beta), I(activation), out,
                         L(out.size))
            return out
        out[...] = x
        self._shortcut(add, alpha, beta, out)
        return self.activate(out, activation)

    def local_forward(self, col, weights, biases, n, out):
        k, locations = col.shape
        self._launch("local_kernel", n * locations, col, weights, biases, I(n), I(k), I(locations), out)
        return out

    def softmax_forward(self, x, n, groups, group_offset, stride, temperature, y):
        """x and y are (B, inputs), rows possibly apart by more than `inputs` (views into wider arrays)."""
        for a in (x, y):
            if a.shape[1] > 1 and a.strides[1] != 4:
                raise ValueError("softmax_forward needs rows of consecutive floats")
        self._launch("softmax_kernel", x.shape[0] * groups, x, L(x.strides[0] // 4), I(x.shape[0]), I(n),
                     I(groups), I(group_offset), I(stride), F(temperature), y, L(y.strides[0] // 4))
        return y

    # ---- backward --------------------------------------------------------------------------------------------

    def gradient(self, y, activation, delta):
        if activation != LINEAR:
            self._launch("gradient_kernel", y.size, y, I(activation), delta, L(y.size))
        return delta

    def _col2im(self, col, x, channel_offset, channels, size, stride, pad, out_h, out_w):
        batch, in_channels, height, width = x.shape
        self._launch("col2im_kernel", batch * channels * height * width, col, I(batch), I(in_channels),
                     I(channel_offset), I(channels), I(height), I(width), I(size), I(stride), I(pad), I(out_h),
                     I(out_w), x)

    def col2im(self, col, size, stride, pad, x):
        channels, height, width = x.shape
        out_h = (height + 2 * pad - size) // stride + 1
        out_w = (width + 2 * pad - size) // stride + 1
        self._col2im(self.xp.ascontiguousarray(col), x[None], 0, channels, size, stride, pad, out_h, out_w)
        return x

    def convolution_backward(self, x, delta, weights, size, stride, pad, groups, weight_updates, dx, workspace=None,
                             derived=None):
        """weight_updates += delta x columns^T; dx gets W^T delta through col2im (a 1x1 convolution overwrites
        dx, as Darknet's beta-0 GEMM does)."""
        out_h, out_w = delta.shape[2:]
        one_by_one = size == 1 and stride == 1 and pad == 0
        for images, group_filters, group_channels, col in self._column_chunks(x, weights.shape[0], size, stride, pad,
                                                                              groups, out_h, out_w):
            nb = images.stop - images.start
            part = delta[images, group_filters].reshape(nb, -1, out_h * out_w)
            d = self.xp.ascontiguousarray(part.transpose(1, 0, 2)).reshape(part.shape[1], -1)
            weight_updates[group_filters] += self.xp.matmul(d, col.T)
            if dx is None:
                continue
            dcol = self.xp.matmul(weights[group_filters].T, d)
            if one_by_one:
                dx[images, group_channels] = dcol.reshape(-1, nb, out_h, out_w).transpose(1, 0, 2, 3)
            else:
                cg = group_channels.stop - group_channels.start
                self._col2im(dcol, dx[images], group_channels.start, cg, size, stride, pad, out_h, out_w)

    def maxpool_backward(self, delta, argmax, size, stride, pad, dx):
        batch, channels, height, width = dx.shape
        self._launch("maxpool_backward_kernel", dx.size, delta, argmax, I(batch), I(channels), I(height), I(width),
                     I(size), I(stride), I(pad), I(delta.shape[2]), I(delta.shape[3]), dx)
        return dx

    def local_backward(self, col, weights, delta, n, weight_updates, col_delta):
        k, locations = col.shape
        self._launch("local_updates_kernel", locations * n * k, col, delta, I(n), I(k), I(locations), weight_updates)
        self._launch("local_col_delta_kernel", k * locations, weights, delta, I(n), I(k), I(locations), col_delta)
        return col_delta

    def shortcut_backward(self, delta, alpha, beta, dx, source_delta):
        dx += F(alpha) * delta
        self._shortcut(delta, 1.0, beta, source_delta)
        return dx

    def upsample_backward(self, delta, stride, scale, reverse, dx):
        if reverse:
            batch, channels, height, width = delta.shape
            self._launch("upsample_kernel", dx.size, delta, I(batch), I(channels), I(height), I(width), I(stride),
                         F(scale), dx)
        else:
            batch, c, h, w = dx.shape
            blocks = delta.reshape(batch, c, h, stride, w, stride)
            dx += F(scale) * blocks.sum(axis=(3, 5), dtype=np.float32)
        return dx

    def reorg_backward(self, delta, stride, reverse, dx):
        return self._reorg(delta, dx.shape, stride, not reverse, dx)

    def batchnorm_backward(self, delta, x, x_norm, mean, variance, scales, bias_updates, scale_updates,
                           replicas=None):
        shaped = delta.reshape(delta.shape[0], delta.shape[1], -1)
        bias_updates += self._channel_sum(shaped, 0)
        if x is None:
            return delta
        x = x.reshape(shaped.shape)
        scale_updates += self._channel_sum(shaped, 2, b=x_norm.reshape(shaped.shape))
        shaped *= scales.reshape(1, -1, 1)
        xp = self.xp
        v = variance + F(.00001)
        mean_delta = (self._channel_sum(shaped, 0) * (-1.0 / xp.sqrt(v.astype(np.float64)))).astype(np.float32)
        variance_delta = (self._channel_sum(shaped, 3, b=x, center=mean)
                          * (-.5 * (v ** F(-1.5)).astype(np.float64))).astype(np.float32)
        channels, size = shaped.shape[1], shaped.shape[2]
        count = shaped.shape[0] * size
        if replicas is not None:        # synchronised batch-norm: the factors are the same on every replica
            sums = replicas.sum(xp.stack([mean_delta, variance_delta]))
            mean_delta, variance_delta = xp.ascontiguousarray(sums[0]), xp.ascontiguousarray(sums[1])
            count *= replicas.size
        self._launch("batchnorm_delta_kernel", shaped.size, shaped, x, mean, variance, mean_delta, variance_delta,
                     I(channels), L(size), L(shaped.size), L(count))
        return delta

    def flush(self, x):
        """Nothing to do: denormals cost a GPU no speed, and they lie below every tolerance."""
        return x

    def zero(self, x):
        x.fill(0)
        return x
