"""`pydarknet export`: onnxruntime runs the ONNX graph, and its outputs must be pydarknet's own forward pass.

Every layer type, every activation and the awkward options (reorg's reverse and flatten, a summing upsample,
shortcuts between different shapes, maxpool padding beyond the window) are in one small network whose every layer
is a graph output, so that a failure names the first divergent layer. The official YOLO cfgs at 416 then check
the heads and the decoded boxes, batch 1 and 2.
"""
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from pydarknet.activations import ACTIVATIONS
from pydarknet.cfg import read_cfg
from pydarknet.export import build_model, heads, output_name
from pydarknet.network import Network
from pydarknet.weights import sane_random_weights, save_weights

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the test extra's (pip install -e '.[test]')")

REPO = pathlib.Path(__file__).resolve().parent.parent
TOLERANCE = 1e-4        # relative L2, as for GEMM chains against Darknet


def relative_l2(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64).ravel(), np.asarray(theirs, np.float64).ravel()
    assert ours.size == theirs.size, f"{ours.size} values against {theirs.size}"
    assert np.isfinite(theirs).all(), "the reference is not finite: the test's random weights are too large"
    return np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs), 1e-30)


def section(name, **options):
    return f"[{name}]\n" + "".join(f"{key}={value}\n" for key, value in options.items()) + "\n"


def every_layer_cfg():
    """A 24x20 network through every layer type pydarknet exports, each activation once (the inputs are shifted
    and scaled into each activation's bends: the piecewise ones bend at -4, 0, 1, 4)."""
    text = section("net", width=24, height=20, channels=3, batch=1)
    for i, name in enumerate(ACTIVATIONS):
        text += section("convolutional", filters=8, size=3, stride=1, pad=1, batch_normalize=i % 2,
                        activation=name, groups=1 if i == 0 else (2 if i % 3 == 0 else 1))
    text += section("batchnorm")                                                # 14
    text += section("reorg", stride=2)                                          # 15: 32x10x12
    text += section("reorg", stride=2, reverse=1)                               # 16: 8x20x24
    text += section("reorg", stride=1, flatten=1)                               # 17
    text += section("reorg", stride=1, flatten=1, reverse=1)                    # 18
    text += section("upsample", stride=2, scale=.5)                             # 19: 8x40x48
    text += section("upsample", stride=-2)                                      # 20: 8x20x24, summed
    text += section("upsample", stride=-3)                                      # 21: 8x6x8, two rows left out
    text += section("shortcut", **{"from": 20}, alpha=.5, beta=2, activation="leaky")   # 22: strided source
    text += section("convolutional", filters=4, size=1, stride=1, activation="linear")  # 23: 4x6x8
    text += section("shortcut", **{"from": 22}, activation="linear")            # 24: more channels in the source
    text += section("upsample", stride=2)                                       # 25: 4x12x16
    text += section("shortcut", **{"from": 23}, beta=.5)                        # 26: sampled into every 2nd place
    text += section("maxpool", size=2, stride=2, padding=3)                     # 27: padding past the window
    text += section("maxpool", size=3, stride=1)                                # 28
    text += section("convolutional", filters=6, size=3, stride=2, activation="leaky")   # 29: no pad, stride 2
    text += section("route", layers=28)                                         # 30
    text += section("crop", crop_height=5, crop_width=7)                        # 31: 4x5x7
    text += section("local", size=3, stride=1, pad=1, filters=3, activation="leaky")    # 32: 3x5x7
    text += section("local", size=2, stride=1, filters=2, activation="linear")  # 33: 2x4x6
    text += section("route", layers=31)                                         # 34
    text += section("avgpool")                                                  # 35
    text += section("connected", output=6, batch_normalize=1, activation="logistic")    # 36
    text += section("dropout", probability=.3)                                  # 37
    text += section("logistic")                                                 # 38
    text += section("softmax", groups=2, temperature=2)                         # 39
    text += section("cost")                                                     # 40: zeros, as without truth
    text += section("route", layers="31,32")                                    # 41: 7x5x7
    text += section("convolutional", filters=16, size=1, stride=1, activation="linear")  # 42
    text += section("region", classes=3, coords=4, num=2, softmax=1, anchors="1,2, 3,1.5")
    text += section("route", layers=41)
    text += section("convolutional", filters=16, size=1, stride=1, activation="linear")  # 45
    text += section("region", classes=3, coords=4, num=2, softmax=1, background=1, anchors="2,2, 1,3")
    text += section("route", layers=41)
    text += section("convolutional", filters=16, size=1, stride=1, activation="linear")  # 48
    text += section("region", classes=3, coords=4, num=2, anchors="2,1, 1,1")
    text += section("route", layers=41)
    text += section("convolutional", filters=16, size=1, stride=1, activation="linear")  # 51
    text += section("yolo", classes=3, num=3, mask="0,2", anchors="4,5, 8,9, 16,10")
    text += section("route", layers=41)
    text += section("connected", output=2 * 2 * (2 * 5 + 3), activation="linear")       # 54
    text += section("detection", classes=3, coords=4, num=2, side=2, softmax=1, sqrt=1)
    return text


def run_onnx(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": x})))


def network(path, seed=1, he_fraction=1.0):
    """Sane random weights: at the full He scale for the small networks, half of it for the deep ones (whose
    boxes' exp() would overflow)."""
    return sane_random_weights(Network(read_cfg(str(path)), str(path)), seed, he_fraction)


def net_input(net, batch, seed=0):
    """Values of both signs and a few units, so that every activation's bends are crossed."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, net.c, net.h, net.w)) * 3).astype(np.float32)


def decoded(net, b):
    """pydarknet's records of image b before NMS and before the letterbox correction, as get_network_boxes lays
    them out (threshold 0)."""
    parts = [layer.detections(net, b, 1, 1, 0) if layer.type == "detection"
             else layer.detections(net, b, net.w, net.h, 0, relative=True, letter=False)
             for layer in net.layers if hasattr(layer, "detections")]
    return [np.concatenate([getattr(p, field) for p in parts]) for field in ("bbox", "objectness", "prob")]


def check_decoded(net, outputs, batch):
    for b in range(batch):
        boxes, objectness, prob = decoded(net, b)
        assert relative_l2(outputs["boxes"][b], boxes) <= TOLERANCE
        assert relative_l2(outputs["objectness"][b], objectness) <= TOLERANCE
        # pydarknet keeps a probability only above the threshold (0 here); the graph's scores are unthresholded
        scores = outputs["scores"][b]
        assert relative_l2(np.where(scores > 0, scores, 0), prob) <= TOLERANCE


@pytest.mark.parametrize("batch", [1, 2])
def test_every_layer_type_and_activation_matches_layer_by_layer(tmp_path, batch):
    cfg = tmp_path / "every.cfg"
    cfg.write_text(every_layer_cfg())
    net = network(cfg)
    kinds = {type(layer).__name__ for layer in net.layers}
    from pydarknet.layers import LAYERS
    assert kinds == {cls.__name__ for cls in LAYERS.values()}      # every layer class of the registry
    x = net_input(net, batch)
    outputs = run_onnx(build_model(net, batch, decode=True, outputs=range(len(net.layers))), x)
    net.predict(x)
    for i, layer in enumerate(net.layers):
        ours = outputs[output_name(layer)]
        assert ours.shape == (batch,) + layer.out_shape
        err = relative_l2(ours, net.layer_output(i))
        assert err <= TOLERANCE, f"first divergent layer: {i} [{layer.section.name}] at {err:.2e}"
    check_decoded(net, outputs, batch)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_each_activation_across_its_bends(name):
    """Each activation alone, on values from -10 to 10 that include its bends (and stair's odd and even floors),
    against pydarknet's kernel."""
    import onnx
    from onnx import helper
    from pydarknet import export
    from pydarknet.backend import cpu
    x = np.concatenate([np.linspace(-10, 10, 2001), [-4, 4, 0, 1, -1, -3.5, 2.5]]).astype(np.float32)
    graph = export.Graph(onnx, 1)
    y = export.activation(graph, "input", ACTIVATIONS.index(name))
    graph.nodes.append(helper.make_node("Identity", [y], ["output"]))
    vector = helper.make_tensor_value_info
    model = helper.make_model(helper.make_graph(graph.nodes, "a", [vector("input", onnx.TensorProto.FLOAT, x.shape)],
                                                [vector("output", onnx.TensorProto.FLOAT, x.shape)],
                                                graph.initializers),
                              opset_imports=[helper.make_opsetid("", export.OPSET)])
    model.ir_version = 8
    ours = run_onnx(model, x)["output"]
    expected = cpu.activate(x.copy(), ACTIVATIONS.index(name))
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def resized_cfg(name, folder, size=416):
    text = (REPO / "cfg" / f"{name}.cfg").read_text()
    text, n_w = re.subn(r"(?m)^width\s*=\s*\d+", f"width={size}", text, count=1)
    text, n_h = re.subn(r"(?m)^height\s*=\s*\d+", f"height={size}", text, count=1)
    assert n_w == n_h == 1
    path = folder / f"{name}.cfg"
    path.write_text(text)
    return path


OFFICIAL = ["yolov1-tiny", "yolov2-tiny-voc", "yolov2", "yolov3-tiny", "yolov3-spp"]


@pytest.fixture(scope="module", params=OFFICIAL)
def official(request, tmp_path_factory):
    cfg = resized_cfg(request.param, tmp_path_factory.mktemp(request.param))
    return network(cfg, seed=5, he_fraction=.5)


@pytest.mark.parametrize("batch", [1, 2])
def test_official_heads_and_decoded_boxes_match(official, batch):
    net = official
    x = net_input(net, batch, seed=batch)
    outputs = run_onnx(build_model(net, batch, decode=True), x)
    net.predict(x)
    assert [name for name in outputs if name not in ("boxes", "objectness", "scores")] == \
        [output_name(net.layers[i]) for i in heads(net)]
    for i in heads(net):
        assert relative_l2(outputs[output_name(net.layers[i])], net.layer_output(i)) <= TOLERANCE, i
    check_decoded(net, outputs, batch)


@pytest.mark.parametrize("name", ["clsmini", "v1mini", "v2mini", "v3mini"])
def test_testcfg_networks_with_their_weights(reference, tmp_path, name):
    """The four networks of the reference material, with their trained weights, through the command."""
    cfg, weights = reference / "testcfg" / f"{name}.cfg", reference / "testcfg" / f"{name}.weights"
    out = tmp_path / f"{name}.onnx"
    for batch in (1, 2):
        done = subprocess.run([sys.executable, "-m", "pydarknet", "export", str(cfg), str(weights), str(out),
                               "-batch", str(batch)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert f"Saved {out}" in done.stderr
        from pydarknet.network import load_network
        net = load_network(cfg, weights)
        x = net_input(net, batch, seed=7)
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": x})
        net.predict(x)
        assert len(got) == len(heads(net))
        for value, i in zip(got, heads(net)):
            assert relative_l2(value, net.layer_output(i)) <= TOLERANCE, (name, i)


def export_run(*words):
    return subprocess.run([sys.executable, "-m", "pydarknet", "export", *map(str, words)], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    cfg = folder / "tiny.cfg"
    cfg.write_text(section("net", width=16, height=16, channels=3) +
                   section("convolutional", filters=8, size=3, stride=1, pad=1, activation="leaky") +
                   section("convolutional", filters=2 * 8, size=1, stride=1, activation="linear") +
                   section("yolo", classes=3, num=2, mask="0,1", anchors="4,5, 8,9"))
    weights = folder / "tiny.weights"
    save_weights(network(cfg), weights)
    return cfg, weights


def test_decode_through_the_command(tiny, tmp_path):
    cfg, weights = tiny
    out = tmp_path / "tiny.onnx"
    done = export_run(cfg, weights, out, "-decode")
    assert done.returncode == 0, done.stderr
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["yolo_2", "boxes", "objectness", "scores"]
    from pydarknet.network import load_network
    net = load_network(cfg, weights)
    x = net_input(net, 1, seed=3)
    outputs = dict(zip(["yolo_2", "boxes", "objectness", "scores"], session.run(None, {"input": x})))
    net.predict(x)
    assert outputs["boxes"].shape == (1, 16 * 16 * 2, 4)
    check_decoded(net, outputs, 1)


def one_error_line(done):
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and lines[0].startswith("pydarknet: error: "), done.stderr
    return lines[0]


def test_bad_input_gives_one_line_and_leaves_nothing(tiny, tmp_path):
    cfg, weights = tiny
    truncated = tmp_path / "half.weights"
    data = weights.read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    out = tmp_path / "out.onnx"
    assert "half.weights" in one_error_line(export_run(cfg, truncated, out))
    assert "missing.weights" in one_error_line(export_run(cfg, tmp_path / "missing.weights", out))
    assert "-batch 0" in one_error_line(export_run(cfg, weights, out, "-batch", "0"))
    assert not list(tmp_path.glob("out.onnx*"))
    unwritable = tmp_path / "file" / "out.onnx"
    (tmp_path / "file").write_text("a file, not a folder")
    assert "out.onnx" in one_error_line(export_run(cfg, weights, unwritable))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "half.weights"]


def test_without_onnx_one_line_says_what_to_install(tiny, tmp_path):
    cfg, weights = tiny
    code = ("import sys; sys.modules['onnx'] = None; from pydarknet.cli import main; "
            f"sys.exit(main(['export', {str(cfg)!r}, {str(weights)!r}, {str(tmp_path / 'o.onnx')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "pip install 'pydarknet[export]'" in one_error_line(done)
    assert not list(tmp_path.iterdir())


def test_a_layer_without_an_onnx_form_names_its_cfg_line(tiny, monkeypatch):
    from pydarknet import export
    from pydarknet.errors import DarknetError
    monkeypatch.delitem(export.EMITTERS, "Yolo")
    net = network(tiny[0])
    with pytest.raises(DarknetError, match=r"tiny\.cfg:\d+: \[yolo\]: has no ONNX form"):
        build_model(net)
