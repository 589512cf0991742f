// CUDA kernels of the GPU backend: the twins of backend/cpu/'s Numba loops, with the same arithmetic (double
// where Darknet's C promotes, denormals flushed where cpu/ flushes them). device.py compiles this file with NVRTC;
// the activation codes (LINEAR, LEAKY, ...) are #defined in front of it from pydarknet/activations.py.
//
// Every element-wise kernel walks its range with a grid-stride loop, so any launch size is correct (and the test
// emulator can run each kernel as a single thread on the CPU). The per-channel sums use one block per channel.

#define LOOP(i, n) for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n); \
                        i += (long long)blockDim.x * gridDim.x)

#define FLUSH_BELOW 1.17549435e-38f     // FLT_MIN: smaller magnitudes are denormal and become 0, as in cpu/activations.py
#define NEG_FLT_MAX (-3.4028234663852886e38f)

__device__ __forceinline__ float flush_value(float y)
{
    return (y > -FLUSH_BELOW && y < FLUSH_BELOW) ? 0.0f : y;
}

// activations.h, one value, computed in double where C promotes (cpu/activations.py's activate_value)
__device__ float activate_value(float x, int a)
{
    double v = x, r;
    switch (a) {
    case LINEAR: r = v; break;
    case LEAKY: r = v > 0 ? v : 0.1 * v; break;
    case RELU: r = v > 0 ? v : 0.0; break;
    case LOGISTIC: r = 1.0 / (1.0 + exp(-v)); break;
    case LOGGY: r = 2.0 / (1.0 + exp(-v)) - 1.0; break;
    case RELIE: r = v > 0 ? v : 0.01 * v; break;
    case RAMP: r = (v > 0 ? v : 0.0) + 0.1 * v; break;
    case TANH: { double e = exp(2.0 * v); r = (e - 1.0) / (e + 1.0); break; }
    case PLSE: r = v < -4 ? 0.01 * (v + 4) : (v > 4 ? 0.01 * (v - 4) + 1 : 0.125 * v + 0.5); break;
    case ELU: r = v >= 0 ? v : exp(v) - 1.0; break;
    case LHTAN: r = v < 0 ? 0.001 * v : (v > 1 ? 0.001 * (v - 1) + 1 : v); break;
    case HARDTAN: r = v < -1 ? -1.0 : (v > 1 ? 1.0 : v); break;
    case STAIR: {
        double n = floor(v);
        r = ((long long)n % 2 == 0) ? floor(v / 2.0) : (v - n) + floor(v / 2.0);
        break;
    }
    default: r = v >= 0 ? 1.0507 * v : 1.0507 * 1.6732 * (exp(v) - 1.0);     // SELU
    }
    return (float)r;
}

// the common activations in float, as cpu/activations.py's fused loops compute them, the rest through activate_value
__device__ __forceinline__ float activate_fast(float v, int a)
{
    if (a == LEAKY) return flush_value(v > 0 ? v : 0.1f * v);
    if (a == LINEAR) return flush_value(v);
    return flush_value(activate_value(v, a));
}

// activations.h's *_gradient from the activated output y (cpu/activations.py's _gradient)
__device__ float gradient_value(float y, int a)
{
    switch (a) {
    case LINEAR: return 1.0f;
    case LEAKY: return y > 0 ? 1.0f : 0.1f;
    case RELU: return y > 0 ? 1.0f : 0.0f;
    case LOGISTIC: return (1.0f - y) * y;
    case LOGGY: { float v = (y + 1.0f) / 2.0f; return 2.0f * (1.0f - v) * v; }
    case RELIE: return y > 0 ? 1.0f : 0.01f;
    case RAMP: return y > 0 ? 1.1f : 0.1f;
    case TANH: return 1.0f - y * y;
    case PLSE: return (y < 0 || y > 1) ? 0.01f : 0.125f;
    case ELU: return y >= 0 ? 1.0f : y + 1.0f;
    case LHTAN: return (y > 0 && y < 1) ? 1.0f : 0.001f;
    case HARDTAN: return (y > -1 && y < 1) ? 1.0f : 0.0f;
    case STAIR: return floorf(y) == y ? 0.0f : 1.0f;
    default: return y >= 0 ? 1.0507f : y + (float)(1.0507 * 1.6732);        // SELU
    }
}

extern "C" __global__ void activate_kernel(float* x, long long n, int a)
{
    LOOP(i, n) x[i] = activate_fast(x[i], a);
}

extern "C" __global__ void gradient_kernel(const float* y, int a, float* delta, long long n)
{
    LOOP(i, n) delta[i] *= gradient_value(y[i], a);
}

// normalize (rolling statistics, inference), bias and activation in place on y (B, C, size)
extern "C" __global__ void bias_activate_kernel(float* y, const float* mean, const float* variance,
                                                const float* scales, const float* biases, int normalize, int a,
                                                int channels, long long size, long long n)
{
    LOOP(i, n) {
        int c = (int)((i / size) % channels);
        float m = 0.0f, k = 1.0f;
        if (normalize) {
            m = mean[c];
            k = (float)((double)scales[c] / (sqrt((double)variance[c]) + 1e-6));
        }
        y[i] = activate_fast((y[i] - m) * k + biases[c], a);
    }
}

// train-mode batch-norm after the statistics: keep x and x_norm, then scale, bias and activation
extern "C" __global__ void batchnorm_train_kernel(float* y, const float* mean, const float* variance,
                                                  const float* scales, const float* biases, int a, float* x,
                                                  float* x_norm, int channels, long long size, long long n)
{
    LOOP(i, n) {
        int c = (int)((i / size) % channels);
        float k = (float)(1.0 / (sqrt((double)variance[c]) + (double)0.000001f));
        float v = y[i];
        x[i] = v;
        float normed = (v - mean[c]) * k;
        x_norm[i] = normed;
        y[i] = activate_fast(normed * scales[c] + biases[c], a);
    }
}

// Sums over the batch and the positions of each channel of a (B, C, size), one block per channel:
// mode 0: a; 1: (a - center)^2; 2: a * b; 3: a * (b - center). blockDim.x must be a power of two (<= 256).
extern "C" __global__ void channel_sum_kernel(const float* a, const float* b, const float* center, int mode,
                                              int batch, int channels, long long size, float* out)
{
    __shared__ float partial[256];
    int c = blockIdx.x;
    float m = center ? center[c] : 0.0f;
    float s = 0.0f;
    for (long long j = threadIdx.x; j < (long long)batch * size; j += blockDim.x) {
        long long i = (j / size * channels + c) * size + j % size;
        float v = a[i];
        if (mode == 1) { v -= m; v = v * v; }
        else if (mode == 2) v *= b[i];
        else if (mode == 3) v *= b[i] - m;
        s += v;
    }
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[c] = partial[0];
}

// backward_batchnorm_layer's last step, normalize_delta_cpu: delta from the mean and variance deltas
extern "C" __global__ void batchnorm_delta_kernel(float* delta, const float* x, const float* mean,
                                                  const float* variance, const float* mean_delta,
                                                  const float* variance_delta, int channels, long long size,
                                                  long long n, long long count)
{
    LOOP(i, n) {
        int c = (int)((i / size) % channels);
        double inv = 1.0 / sqrt((double)(variance[c] + 0.00001f));
        delta[i] = (float)(delta[i] * inv + variance_delta[c] * 2.0 * (double)(x[i] - mean[c]) / count
                           + (double)(mean_delta[c] / (float)count));
    }
}

// Columns of `batch` images (rows C*size*size, then image, then position): im2col_cpu for all images at once.
// x holds `in_channels` channels of which this group's `channels` start at `channel_offset`.
extern "C" __global__ void im2col_kernel(const float* x, int batch, int in_channels, int channel_offset,
                                         int channels, int height, int width, int size, int stride, int pad,
                                         int out_h, int out_w, float* col)
{
    long long n = (long long)channels * size * size * batch * out_h * out_w;
    LOOP(i, n) {
        int j = (int)(i % out_w);
        long long t = i / out_w;
        int oi = (int)(t % out_h);
        t /= out_h;
        int b = (int)(t % batch);
        int row = (int)(t / batch);
        int w_offset = row % size, h_offset = (row / size) % size, c = row / size / size;
        int y = h_offset + oi * stride - pad, xx = w_offset + j * stride - pad;
        col[i] = (y >= 0 && y < height && xx >= 0 && xx < width)
                 ? x[(((long long)b * in_channels + channel_offset + c) * height + y) * width + xx] : 0.0f;
    }
}

// col2im_cpu, gathered per pixel in the order the CPU adds the columns (kernel row, then column)
extern "C" __global__ void col2im_kernel(const float* col, int batch, int in_channels, int channel_offset,
                                         int channels, int height, int width, int size, int stride, int pad,
                                         int out_h, int out_w, float* x)
{
    long long n = (long long)batch * channels * height * width;
    long long positions = (long long)out_h * out_w;
    LOOP(i, n) {
        int w = (int)(i % width);
        long long t = i / width;
        int h = (int)(t % height);
        t /= height;
        int c = (int)(t % channels);
        int b = (int)(t / channels);
        long long at = (((long long)b * in_channels + channel_offset + c) * height + h) * width + w;
        float v = x[at];
        for (int kh = 0; kh < size; ++kh) {
            int dy = h + pad - kh;
            if (dy < 0 || dy % stride) continue;
            int oi = dy / stride;
            if (oi >= out_h) continue;
            for (int kw = 0; kw < size; ++kw) {
                int dx = w + pad - kw;
                if (dx < 0 || dx % stride) continue;
                int oj = dx / stride;
                if (oj >= out_w) continue;
                long long row = ((long long)c * size + kh) * size + kw;
                v += col[(row * batch + b) * positions + (long long)oi * out_w + oj];
            }
        }
        x[at] = v;
    }
}

// forward_maxpool_layer with -FLT_MAX padding; argmax is the flat input index of each maximum
extern "C" __global__ void maxpool_kernel(const float* x, int batch, int channels, int height, int width, int size,
                                          int stride, int pad, int out_h, int out_w, float* y, long long* argmax)
{
    long long n = (long long)batch * channels * out_h * out_w;
    int offset = -(pad / 2);
    LOOP(i, n) {
        int j = (int)(i % out_w);
        long long t = i / out_w;
        int oi = (int)(t % out_h);
        long long bc = t / out_h;
        long long base = bc * height * width;
        float best = NEG_FLT_MAX;
        long long best_i = -1;
        for (int dn = 0; dn < size; ++dn) {
            int yy = offset + oi * stride + dn;
            for (int dm = 0; dm < size; ++dm) {
                int xx = offset + j * stride + dm;
                bool inside = yy >= 0 && yy < height && xx >= 0 && xx < width;
                float v = inside ? x[base + (long long)yy * width + xx] : NEG_FLT_MAX;
                if (v > best) {
                    best = v;
                    best_i = base + (long long)yy * width + xx;
                }
            }
        }
        y[i] = best;
        argmax[i] = best_i;
    }
}

// backward_maxpool_layer gathered per input: the deltas of the outputs whose maximum it was, in output order
extern "C" __global__ void maxpool_backward_kernel(const float* delta, const long long* argmax, int batch,
                                                   int channels, int height, int width, int size, int stride,
                                                   int pad, int out_h, int out_w, float* dx)
{
    long long n = (long long)batch * channels * height * width;
    int offset = -(pad / 2);
    LOOP(i, n) {
        int w = (int)(i % width);
        long long t = i / width;
        int h = (int)(t % height);
        long long bc = t / height;
        int lo_h = h - offset - size + 1, lo_w = w - offset - size + 1;
        int first_i = lo_h <= 0 ? 0 : (lo_h + stride - 1) / stride;
        int first_j = lo_w <= 0 ? 0 : (lo_w + stride - 1) / stride;
        int last_i = min((h - offset) / stride, out_h - 1), last_j = min((w - offset) / stride, out_w - 1);
        float v = dx[i];
        for (int oi = first_i; oi <= last_i; ++oi)
            for (int oj = first_j; oj <= last_j; ++oj) {
                long long o = (bc * out_h + oi) * out_w + oj;
                if (argmax[o] == i) v += delta[o];
            }
        dx[i] = v;
    }
}

// nearest-neighbour enlargement by stride, times scale: y (B, C, H*stride, W*stride)
extern "C" __global__ void upsample_kernel(const float* x, int batch, int channels, int height, int width,
                                           int stride, float scale, float* y)
{
    long long n = (long long)batch * channels * height * stride * width * stride;
    int out_w = width * stride, out_h = height * stride;
    LOOP(i, n) {
        int j = (int)(i % out_w);
        long long t = i / out_w;
        int oi = (int)(t % out_h);
        long long bc = t / out_h;
        y[i] = scale * x[(bc * height + oi / stride) * width + j / stride];
    }
}

// the reverse upsample: the scaled sum of each stride x stride block, summed in the CPU's order
extern "C" __global__ void downsample_kernel(const float* x, int batch, int channels, int height, int width,
                                             int stride, float scale, int out_h, int out_w, float* y)
{
    long long n = (long long)batch * channels * out_h * out_w;
    LOOP(i, n) {
        int j = (int)(i % out_w);
        long long t = i / out_w;
        int oi = (int)(t % out_h);
        long long bc = t / out_h;
        float s = 0.0f;
        for (int dn = 0; dn < stride; ++dn)
            for (int dm = 0; dm < stride; ++dm)
                s += scale * x[(bc * height + oi * stride + dn) * width + j * stride + dm];
        y[i] = s;
    }
}

// reorg_cpu's index arithmetic, one thread per input index (its reverse=0 quirk included)
extern "C" __global__ void reorg_kernel(const float* x, int w, int h, int c, int batch, int stride, int forward,
                                        float* out)
{
    long long n = (long long)w * h * c * batch;
    int out_c = c / (stride * stride);
    LOOP(in_index, n) {
        int i = (int)(in_index % w);
        long long t = in_index / w;
        int j = (int)(t % h);
        t /= h;
        int k = (int)(t % c);
        int b = (int)(t / c);
        int c2 = k % out_c, offset = k / out_c;
        int w2 = i * stride + offset % stride, h2 = j * stride + offset / stride;
        long long out_index = w2 + (long long)w * stride * (h2 + (long long)h * stride * (c2 + (long long)out_c * b));
        if (forward) out[out_index] = x[in_index];
        else out[in_index] = x[out_index];
    }
}

// shortcut of equal shapes: out = activation(alpha * x + beta * add)
extern "C" __global__ void shortcut_same_kernel(const float* x, const float* add, float alpha, float beta, int a,
                                                float* out, long long n)
{
    LOOP(i, n) {
        float v = alpha * x[i] + beta * add[i];
        out[i] = a == LINEAR ? flush_value(v) : flush_value(activate_value(v, a));
    }
}

// shortcut_cpu: add (B, c1, h1, w1) sampled or strided onto out (B, c2, h2, w2), over the channels both have
extern "C" __global__ void shortcut_kernel(const float* add, int batch, int c1, int h1, int w1, float alpha,
                                           float beta, int c2, int h2, int w2, float* out)
{
    int stride = max(w1 / w2, 1), sample = max(w2 / w1, 1);
    int minw = min(w1, w2), minh = min(h1, h2), minc = min(c1, c2);
    long long n = (long long)batch * minc * minh * minw;
    LOOP(t, n) {
        int i = (int)(t % minw);
        long long r = t / minw;
        int j = (int)(r % minh);
        r /= minh;
        int k = (int)(r % minc);
        int b = (int)(r / minc);
        long long o = (((long long)b * c2 + k) * h2 + (long long)j * sample) * w2 + (long long)i * sample;
        long long s = (((long long)b * c1 + k) * h1 + (long long)j * stride) * w1 + (long long)i * stride;
        out[o] = alpha * out[o] + beta * add[s];
    }
}

// one image of forward_local_layer: a separate (n x k) filter bank at each location
extern "C" __global__ void local_kernel(const float* col, const float* weights, const float* biases, int n, int k,
                                        int locations, float* out)
{
    LOOP(t, (long long)n * locations) {
        int f = (int)(t / locations), loc = (int)(t % locations);
        const float* w = weights + ((long long)loc * n + f) * k;
        float s = 0.0f;
        for (int q = 0; q < k; ++q) s += w[q] * col[(long long)q * locations + loc];
        out[t] = biases[t] + s;
    }
}

// one image of backward_local_layer: the weight updates ...
extern "C" __global__ void local_updates_kernel(const float* col, const float* delta, int n, int k, int locations,
                                                float* weight_updates)
{
    LOOP(t, (long long)locations * n * k) {
        int q = (int)(t % k);
        long long r = t / k;
        int f = (int)(r % n), loc = (int)(r / n);
        weight_updates[t] += delta[(long long)f * locations + loc] * col[(long long)q * locations + loc];
    }
}

// ... and the column gradient
extern "C" __global__ void local_col_delta_kernel(const float* weights, const float* delta, int n, int k,
                                                  int locations, float* col_delta)
{
    LOOP(t, (long long)k * locations) {
        int q = (int)(t / locations), loc = (int)(t % locations);
        float s = 0.0f;
        for (int f = 0; f < n; ++f)
            s += weights[((long long)loc * n + f) * k + q] * delta[(long long)f * locations + loc];
        col_delta[t] = s;
    }
}

// softmax_cpu over rows of x (row_stride floats apart): `groups` softmaxes of n values each per row
extern "C" __global__ void softmax_kernel(const float* x, long long x_row, int batch, int n, int groups,
                                          int group_offset, int stride, float temperature, float* y, long long y_row)
{
    LOOP(bg, (long long)batch * groups) {
        long long b = bg / groups;
        int g = (int)(bg % groups);
        const float* in = x + b * x_row + (long long)g * group_offset;
        float* out = y + b * y_row + (long long)g * group_offset;
        float largest = NEG_FLT_MAX;
        for (int i = 0; i < n; ++i) largest = in[i * stride] > largest ? in[i * stride] : largest;
        float s = 0.0f;
        for (int i = 0; i < n; ++i) {
            float e = (float)exp((double)(in[i * stride] / temperature - largest / temperature));
            s += e;
            out[i * stride] = e;
        }
        for (int i = 0; i < n; ++i) out[i * stride] /= s;
    }
}
