"""Training steps against the original Darknet: losses, deltas, updates after step 1, weights after step 3.

The goldens were made as the golden README says: batch 2, subdivisions 1, the same X and truth three times,
train_network_datum semantics (seen += batch, forward, backward, update when seen/batch % subdivisions == 0).
"""
import json

import numpy as np
import pytest

from pydarknet.backend import to_host
from pydarknet.cfg import read_cfg
from pydarknet.network import Network
from pydarknet.weights import load_weights

UPDATES = {"wupd": "weight_updates", "bupd": "bias_updates", "supd": "scale_updates"}


def relative_l2(ours, theirs):
    ours, theirs = np.asarray(to_host(ours), np.float64).ravel(), np.asarray(theirs, np.float64).ravel()
    assert ours.size == theirs.size
    return np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs), 1e-30)


def network(reference, name, weights=None, device="cpu"):
    net = Network(read_cfg(reference / "testcfg" / f"{name}.cfg"), name, device=device)
    load_weights(net, weights or reference / "testcfg" / f"{name}.weights")
    return net


def data(golden, name):
    folder = golden / name / "train"
    return np.load(folder / "X.npy"), np.load(folder / "truth.npy")


@pytest.mark.parametrize("name", ["v3mini", "v1mini-nodrop", "clsmini"])
def test_step1_matches_darknet(reference, golden, name, device, capsys):
    net = network(reference, name, device=device)
    x, truth = data(golden, name)
    losses = json.loads((golden / name / "train" / "losses.json").read_text())["steps"][0]
    # one step without the update, so the *_updates are compared as Darknet dumped them (before update_network)
    net.seen += x.shape[0]
    net.truth = truth.reshape(x.shape[0], -1)
    net.train = True
    net.forward(x)
    assert net.cost == pytest.approx(losses["cost"], rel=1e-4)
    for index, cost in losses["layer_costs"].items():
        assert net.layers[int(index)].cost == pytest.approx(cost, rel=1e-4), f"layer {index} cost"
    outputs = [net.layer_output(i).copy() for i in range(len(net.layers))]
    net.backward()
    folder = golden / name / "train"
    for i, layer in enumerate(net.layers):
        where = f"{name} layer {i} ({layer.type})"
        assert relative_l2(outputs[i], np.load(folder / f"step1_out_{i:03d}.npy")) <= 1e-4, where + " output"
        assert relative_l2(layer.delta, np.load(folder / f"step1_delta_{i:03d}.npy")) <= 1e-4, where + " delta"
        for short, attr in UPDATES.items():
            path = folder / f"step1_{short}_{i:03d}.npy"
            if path.exists():
                err = relative_l2(getattr(layer, attr), np.load(path))
                assert err <= 1e-4, f"{where} {attr}: relative L2 error {err:.1e}"


def check_three_steps(reference, golden, name, folder, device="cpu"):
    net = network(reference, name, device=device)
    x, truth = data(golden, name)
    losses = json.loads((golden / name / folder / "losses.json").read_text())["steps"]
    for step in losses:
        cost = net.train_datum(x, truth)
        assert net.seen == step["seen"]
        assert cost == pytest.approx(step["cost"], rel=1e-4), f"step {step['step']} cost"
        assert net.current_rate() == pytest.approx(step["learning_rate"], rel=1e-6)
    expect = network(reference, name, golden / name / folder / "after3.weights")
    for ours, theirs in zip(net.layers, expect.layers):
        for a, b in zip(ours.weight_arrays(), theirs.weight_arrays()):
            err = relative_l2(a, b)
            assert err <= 1e-4, f"{name} layer {ours.index} ({ours.type}): weights after 3 steps off by {err:.1e}"
    return net


@pytest.mark.parametrize("name", ["v3mini", "v1mini-nodrop", "clsmini"])
def test_three_steps_match_darknet(reference, golden, name, device, capsys):
    check_three_steps(reference, golden, name, "train", device)


def test_v2mini_region_follows_the_gpu_backward(reference, golden, device, capsys):
    """pjreddie's CPU region backward is empty; the GPU path (delta times the logistic gradient on x, y and
    objectness, then into the network) is what golden/v2mini/train_regiongpu recorded."""
    name = "v2mini"
    losses = json.loads((golden / name / "train_regiongpu" / "losses.json").read_text())["steps"]
    net = network(reference, name, device=device)
    x, truth = data(golden, name)
    net.seen += x.shape[0]
    net.truth = truth.reshape(x.shape[0], -1)
    net.train = True
    net.forward(x)
    for i in range(len(net.layers)):    # the CPU run's train-mode forward outputs are the same
        err = relative_l2(net.layer_output(i), np.load(golden / name / "train" / f"step1_out_{i:03d}.npy"))
        assert err <= 1e-4, f"layer {i} output"
    net.backward()
    for index, sums in losses[0]["checksums"].items():
        layer = net.layers[int(index)]
        for short, attr in UPDATES.items():
            key = f"{short}_sumsq"
            if key in sums and not hasattr(layer, attr):
                assert sums[key] == 0, f"layer {index} has no {attr} but Darknet's sum is {sums[key]}"
            elif key in sums:
                ours = float(np.sum(np.float64(to_host(getattr(layer, attr))) ** 2))
                assert ours == pytest.approx(sums[key], rel=1e-4), f"layer {index} {attr} sum of squares"
    check_three_steps(reference, golden, name, "train_regiongpu", device)


def test_stopbackward_freezes_the_layers_before_it(tmp_path, capsys):
    """Darknet's stopbackward=1: backward_network stops at that layer, so it and the layers before it get no
    gradient; update_network still steps them, which leaves only weight decay (W *= 1 - rate*decay)."""
    (tmp_path / "stop.cfg").write_text(
        "[net]\nbatch=2\nwidth=8\nheight=8\nchannels=3\nlearning_rate=.1\nmomentum=0\ndecay=.01\n\n"
        "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n\n"
        "[maxpool]\nsize=2\nstride=2\nstopbackward=1\n\n"
        "[connected]\noutput=6\nactivation=linear\n\n[cost]\n")
    net = Network(read_cfg(tmp_path / "stop.cfg"), "stop.cfg")
    net.init_random(0)
    rng = np.random.default_rng(0)
    conv, fc = to_host(net.layers[0].weights).copy(), to_host(net.layers[2].weights).copy()
    net.train_datum(rng.random((2, 3, 8, 8), np.float32), rng.random((2, 6), np.float32))
    np.testing.assert_allclose(to_host(net.layers[0].weights), conv * np.float32(1 - .1 * .01), rtol=1e-6)
    assert not np.any(to_host(net.layers[0].bias_updates))
    assert np.abs(to_host(net.layers[2].weights) - fc).max() > 1e-3
