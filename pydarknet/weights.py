"""Darknet's .weights files: a header, then every layer's parameters as one flat float32 stream.

Header: int32 major, minor, revision; then `seen` as uint64 when major*10+minor >= 2 (and both < 1000), else int32.
Connected layers' weights are transposed in files whose major or minor exceeds 1000 (Darknet's old rule).
Reading and writing are mirror images: saving what was loaded gives the same bytes.
"""
import os
import tempfile
import warnings

import numpy as np

from .backend import assign, to_host
from .errors import WeightsError
from .layers.connected import Connected

CURRENT_VERSION = (0, 2, 0)


class WeightsWarning(UserWarning):
    """A weights file that loads, but not as a whole: truncated, partial, or with bytes left over."""


def _seen_is_64bit(major, minor):
    return major * 10 + minor >= 2 and major < 1000 and minor < 1000


def _transposed(major, minor):
    return major > 1000 or minor > 1000


FILE_FLOAT = np.dtype("<f4")


def read_header(f, path):
    head = f.read(12)
    if len(head) < 12:
        raise WeightsError(f"{path}: too short for a Darknet weights header ({len(head)} bytes)")
    major, minor, revision = (int(v) for v in np.frombuffer(head, "<i4"))
    plausible = (major in (0, 1) or 1000 < major <= 1001) and (0 <= minor <= 9 or 1000 < minor <= 1009)
    if not plausible or not 0 <= revision <= 10000:
        raise WeightsError(f"{path}: unsupported weights version {major}.{minor}.{revision} "
                           f"(Darknet writes 0.1.0 and 0.2.0): not a Darknet .weights file?")
    size = 8 if _seen_is_64bit(major, minor) else 4
    raw = f.read(size)
    if len(raw) < size:
        raise WeightsError(f"{path}: the header ends before its 'seen' count")
    seen = int(np.frombuffer(raw, "<u8" if size == 8 else "<i4")[0])
    return (major, minor, revision), seen


def _file_arrays(layer, transposed):
    """The arrays a layer reads from a file, as (array, shape in the file) pairs."""
    for array in layer.weight_arrays():
        if transposed and isinstance(layer, Connected) and array is layer.weights:
            yield array, array.shape[::-1]   # stored inputs x outputs
        else:
            yield array, array.shape


def covers_every_layer(net, path):
    """True when the weights file holds every layer's parameters, so that loading it overwrites all of them (a new
    network's random weights need not be drawn first); False when it is shorter or cannot be read (load_weights
    then says why)."""
    try:
        with open(os.fsdecode(path), "rb") as f:
            read_header(f, path)
            body = os.fstat(f.fileno()).st_size - f.tell()
    except (OSError, WeightsError):
        return False
    return body >= 4 * sum(layer.file_floats for layer in net.layers if layer.weight_arrays())


def _read_layers(f, path, floats, layers, transposed):
    """Read the layers' arrays from f, which holds `floats` more floats: straight into an array where it lies in
    host memory as the file does (no copy of the 35-250 MB file in between), through a buffer otherwise.
    Returns (layers loaded, floats read), or (layers loaded, None) when the file ended before a layer."""
    offset = loaded = 0
    with_params = [layer for layer in layers if layer.weight_arrays()]
    for layer in with_params:
        need = layer.file_floats
        if offset + need > floats:
            if offset < floats:
                warnings.warn(f"{path}: truncated inside layer {layer.index} ({layer.type}): it holds "
                              f"{floats - offset} of the layer's {need} floats; layers {layer.index} and "
                              f"after keep their initial weights", WeightsWarning, stacklevel=3)
            else:
                warnings.warn(f"{path}: partial weights file, loaded {loaded} of {len(with_params)} layers with "
                              f"weights; layers {layer.index} and after keep their initial weights",
                              WeightsWarning, stacklevel=3)
            return loaded, None
        for array, shape in _file_arrays(layer, transposed):
            direct = (shape == array.shape and isinstance(array, np.ndarray) and array.dtype == FILE_FLOAT
                      and array.flags.c_contiguous)
            values = array if direct else np.empty(shape, FILE_FLOAT)
            if f.readinto(memoryview(values).cast("B")) != values.nbytes:
                raise WeightsError(f"{path}: the file ended while layer {layer.index} ({layer.type}) was read")
            offset += array.size
            if not np.all(np.isfinite(values)):
                raise WeightsError(f"{path}: layer {layer.index} ({layer.type}) holds NaN or infinite weights")
            if not direct:
                assign(array, values.T if shape != array.shape else values)
        loaded += 1
    return loaded, offset


def load_weights(net, path, upto=None):
    """Fill the network's parameters from a Darknet .weights file, layer by layer (libdarknet's load_weights_upto).

    A file that ends at a layer boundary is a partial file (e.g. darknet53.conv.74): the layers it holds are
    loaded and the rest keep their values. A file that ends inside a layer, or has bytes left over, loads what
    fits and warns, naming the layer. Returns the number of layers whose parameters were loaded.
    """
    path = os.fsdecode(path)
    try:
        with open(path, "rb") as f:
            version, seen = read_header(f, path)
            body = os.fstat(f.fileno()).st_size - f.tell()
            loaded, read = _read_layers(f, path, body // 4, net.layers if upto is None else net.layers[:upto],
                                        _transposed(version[0], version[1]))
    except FileNotFoundError:
        raise WeightsError(f"{path}: weights file not found") from None
    except IsADirectoryError:
        raise WeightsError(f"{path}: is a directory, not a weights file") from None
    except OSError as e:
        raise WeightsError(f"{path}: cannot read: {e.strerror}") from None
    if read is not None and body - read * 4 and upto is None:
        warnings.warn(f"{path}: {body - read * 4} bytes left over after the last layer: the file does not match this "
                      f"cfg (a different network or number of classes?)", WeightsWarning, stacklevel=2)
    net.seen = seen
    net.weights_header = version
    net.weights_changed()
    return loaded


def save_weights(net, path, upto=None):
    """Write the network's parameters as Darknet does, atomically (a temp file renamed over the target).

    The header keeps the version of the file the weights were loaded from (0.2.0 for new networks).
    """
    path = os.fsdecode(path)
    version = net.weights_header or CURRENT_VERSION
    transposed = _transposed(version[0], version[1])
    layers = net.layers if upto is None else net.layers[:upto]
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".weights", dir=folder)
    except OSError as e:
        raise WeightsError(f"{path}: cannot write weights here: {e.strerror}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())       # mkstemp makes 0600; a plain open() (Darknet's fopen) honours the umask
        with os.fdopen(fd, "wb") as f:
            f.write(np.asarray(version, "<i4").tobytes())
            f.write(np.asarray([net.seen], "<u8" if _seen_is_64bit(*version[:2]) else "<i4").tobytes())
            for layer in layers:
                for array, shape in _file_arrays(layer, transposed):
                    host = to_host(array)
                    f.write(np.ascontiguousarray(host.T if shape != host.shape else host, "<f4").tobytes())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sane_random_weights(net, seed=0, he_fraction=0.5):
    """Random weights that make a useful test network: activations neither vanish nor blow up.

    Darknet's own initialisation leaves rolling variances at 0, which divides by sqrt(0)+1e-6 at inference; here
    batch-norm scales and variances are drawn around 1 (0.5-1.5) and weights at `he_fraction` of the He scale
    sqrt(2/fan_in): at 0.5 deep networks stay finite, at 1 shallow ones keep more of their input's signal.
    """
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        arrays = layer.weight_arrays()
        if not arrays:
            continue
        if hasattr(layer, "weights"):
            scale = he_fraction * np.sqrt(2.0 / layer.fan_in)
            assign(layer.weights, rng.standard_normal(layer.weights.shape) * scale)
        if hasattr(layer, "biases"):
            assign(layer.biases, rng.normal(0, 0.1, layer.biases.shape))
        if hasattr(layer, "scales"):
            assign(layer.scales, rng.uniform(0.5, 1.5, layer.scales.shape))
            assign(layer.rolling_mean, rng.normal(0, 0.1, layer.rolling_mean.shape))
            assign(layer.rolling_variance, rng.uniform(0.5, 1.5, layer.rolling_variance.shape))
    return net.weights_changed()
