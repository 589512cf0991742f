"""Network.predict's fused passes: a convolution and the 2x2 stride-2 [maxpool] after it in one pass, where no other
layer reads the convolution's output. The numbers must be those of the layers run one by one, to the bit."""
import pathlib

import numpy as np
import pytest

from pydarknet.cfg import read_cfg
from pydarknet.network import Network

REPO = pathlib.Path(__file__).resolve().parent.parent


def tiny(tmp_path, size=96, read=None):
    """Our yolov3-tiny.cfg at `size`, with random weights and batch-norm statistics (rolling variance away from 0),
    optionally a [shortcut] at the end that reads layer `read`'s output."""
    text = (REPO / "cfg" / "yolov3-tiny.cfg").read_text()
    text = text.replace("width=416", f"width={size}").replace("height=416", f"height={size}")
    if read is not None:
        text += f"\n[shortcut]\nfrom={read}\nactivation=linear\n"
    path = tmp_path / "tiny.cfg"
    path.write_text(text)
    net = Network(read_cfg(path), str(path)).init_random(3)
    rng = np.random.default_rng(4)
    for layer in net.layers:
        if getattr(layer, "batch_normalize", 0):
            layer.rolling_mean[:] = rng.standard_normal(layer.rolling_mean.shape) * .1
            layer.rolling_variance[:] = rng.random(layer.rolling_variance.shape) + .5
    return net


def heads(net):
    return [np.array(layer.output) for layer in net.layers if layer.type == "yolo"]


def test_yolov3_tiny_fuses_its_stride_2_pools_and_gives_the_same_heads(tmp_path):
    """The heads to the bit; a fused convolution's own output is not written by the pass, and reading it makes it
    (Darknet's values, as libdarknet and the golden tests read every layer)."""
    net = tiny(tmp_path)
    assert net.fused_pools() == {0, 2, 4, 6}     # the second route reads 8; 10 is followed by a stride-1 pool
    x = np.random.default_rng(5).random((2, 3, 96, 96), dtype=np.float32)
    net.predict(x, fuse=False)
    unfused = heads(net)
    outputs = [np.array(layer.output) for layer in net.layers]
    net.predict(x)
    assert all(net.layers[i].__dict__["_unmade"] is not None for i in (0, 2, 4, 6))
    assert all(net.layers[i].__dict__["_unmade"] is None for i in (1, 3, 5, 7, 8))
    for ours, theirs in zip(heads(net), unfused):
        np.testing.assert_array_equal(ours, theirs)
    for i, layer in enumerate(net.layers):
        np.testing.assert_array_equal(net.layer_output(i), outputs[i].reshape(net.layer_output(i).shape))
    assert net.layers[0].__dict__["_unmade"] is None        # made once


@pytest.mark.parametrize("read", [4, 2])
def test_a_convolution_another_layer_reads_is_not_fused(tmp_path, read):
    net = tiny(tmp_path, size=64, read=read)
    assert read not in net.fused_pools() and {0, 6} <= net.fused_pools()
    x = np.random.default_rng(6).random((1, 3, 64, 64), dtype=np.float32)
    unfused = np.array(net.predict(x, fuse=False))
    np.testing.assert_array_equal(net.predict(x), unfused)     # the shortcut's output, from layer `read`'s
    assert net.layers[read].__dict__["_unmade"] is None and net.layers[0].__dict__["_unmade"] is not None


def test_training_and_forward_do_not_fuse(tmp_path):
    net = tiny(tmp_path, size=64)
    x = np.random.default_rng(7).random((1, 3, 64, 64), dtype=np.float32)
    net.forward(x)
    assert all(layer.__dict__["_unmade"] is None for layer in net.layers)


def test_a_fused_output_is_made_from_its_own_pass(tmp_path):
    """Two passes, then the first layer read: the second pass's values."""
    net = tiny(tmp_path, size=64)
    a, b = (np.random.default_rng(seed).random((3, 64, 64), dtype=np.float32) for seed in (8, 9))
    net.predict(b, fuse=False)
    expected = np.array(net.layers[0].output)
    net.predict(a)
    net.predict(b)
    np.testing.assert_array_equal(net.layers[0].output, expected)
