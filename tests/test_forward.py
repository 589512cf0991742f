"""Every layer's forward output against the original Darknet's, layer by layer, so a failure names the layer."""
import numpy as np
import pytest

from pydarknet.backend import to_host
from pydarknet.cfg import read_cfg
from pydarknet.network import Network
from pydarknet.weights import load_weights


def relative_l2(ours, theirs):
    ours, theirs = np.asarray(to_host(ours), np.float64).ravel(), np.asarray(theirs, np.float64).ravel()
    assert ours.size == theirs.size
    return np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs), 1e-30)


def load(reference, name, device="cpu"):
    net = Network(read_cfg(reference / "testcfg" / f"{name}.cfg"), name, device=device)
    load_weights(net, reference / "testcfg" / f"{name}.weights")
    return net


@pytest.mark.parametrize("name", ["v3mini", "v2mini", "v1mini", "clsmini"])
def test_inference_forward_matches_darknet(reference, golden, name, device):
    net = load(reference, name, device)
    net.predict(np.load(golden / name / "input.npy"))
    for i, layer in enumerate(net.layers):
        ours = net.layer_output(i)
        assert not np.isnan(ours).any(), f"layer {i} ({layer.type}) has NaN"
        err = relative_l2(ours, np.load(golden / name / f"out_{i:03d}.npy"))
        assert err <= 1e-5, f"{name} layer {i} ({layer.type}): relative L2 error {err:.2e}"


@pytest.mark.parametrize("name", ["v3mini", "v2mini", "v1mini-nodrop", "clsmini"])
def test_train_mode_forward_matches_darknet(reference, golden, name, device):
    """Batch-norm with batch statistics, batch 2: the step-1 outputs Darknet recorded before its backward pass."""
    net = load(reference, name, device)
    net.train = True
    net.forward(np.load(golden / name / "train" / "X.npy"))
    compared = 0
    for i, layer in enumerate(net.layers):
        path = golden / name / "train" / f"step1_out_{i:03d}.npy"
        if not path.exists():
            continue
        compared += 1
        err = relative_l2(net.layer_output(i), np.load(path))
        assert err <= 1e-5, f"{name} layer {i} ({layer.type}): relative L2 error {err:.2e}"
    assert compared == len(net.layers)


def test_network_output_skips_cost_layers(reference, tmp_path):
    cfg = (reference / "testcfg" / "clsmini.cfg").read_text() + "\n[cost]\ntype=sse\n"
    (tmp_path / "cls.cfg").write_text(cfg)
    net = Network(read_cfg(tmp_path / "cls.cfg"), "cls")
    load_weights(net, reference / "testcfg" / "clsmini.weights")
    out = net.predict(np.load(reference / "golden" / "clsmini" / "input.npy"))
    np.testing.assert_allclose(out.ravel(), np.load(reference / "golden" / "clsmini" / "out_005.npy"), rtol=1e-5)
