"""The three loss layers (yolo, region, detection) against the original Darknet's first training step, and the
quirks of pjreddie's loss code on small hand-made cases."""
import json
import re
import types

import numpy as np
import pytest

from pydarknet.cfg import read_cfg
from pydarknet.layers.detection import Detection
from pydarknet.layers.region import Region
from pydarknet.layers.yolo import Yolo
from pydarknet.loss import c_div, c_float, squared_magnitude
from pydarknet.network import Network
from pydarknet.weights import load_weights

# name -> the loss layers whose cost Darknet recorded, and the golden delta to compare each one's delta with
LOSS_LAYERS = {
    "v3mini": {12: "train/step1_delta_012.npy", 18: "train/step1_delta_018.npy"},
    "v2mini": {13: "train/step1_delta_013.npy"},     # CPU run: its backward is empty, the delta is the forward's
    "v1mini-nodrop": {6: "train/step1_delta_006.npy"},
}
NUMBER = re.compile(r"-?nan|-?inf|-?\d+\.\d+")


def relative_l2(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64).ravel(), np.asarray(theirs, np.float64).ravel()
    assert ours.size == theirs.size
    return np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs), 1e-30)


def assert_same_line(ours, theirs, tol=1e-4):
    """Same printf format, numbers within tol (the -Ofast build may round the 6th decimal the other way)."""
    assert NUMBER.sub("{}", ours) == NUMBER.sub("{}", theirs), f"{ours!r} != {theirs!r}"
    for a, b in zip(NUMBER.findall(ours), NUMBER.findall(theirs)):
        assert a == b or abs(float(a) - float(b)) <= tol, f"{ours!r} != {theirs!r}"


def step1(reference, golden, name):
    net = Network(read_cfg(reference / "testcfg" / f"{name}.cfg"), name)
    load_weights(net, reference / "testcfg" / f"{name}.weights")
    folder = golden / name / "train"
    x, truth = np.load(folder / "X.npy"), np.load(folder / "truth.npy")
    net.seen = x.shape[0]       # train_network_datum counts the batch before the forward pass
    net.truth = truth
    net.train = True
    net.forward(x)
    return net


@pytest.mark.parametrize("name", list(LOSS_LAYERS))
def test_step1_loss_matches_darknet(reference, golden, name, capsys):
    net = step1(reference, golden, name)
    printed = capsys.readouterr().out.splitlines()
    steps = json.loads((golden / name / "train" / "losses.json").read_text())["steps"]
    expected = steps[0]["layer_costs"]
    assert sorted(int(i) for i in expected) == sorted(LOSS_LAYERS[name])
    for index, path in LOSS_LAYERS[name].items():
        layer = net.layers[index]
        assert isinstance(layer.cost, (float, np.floating))
        assert layer.cost == pytest.approx(expected[str(index)], rel=1e-4), f"{name} layer {index} cost"
        err = relative_l2(layer.delta, np.load(golden / name / path))
        assert err <= 1e-4, f"{name} layer {index} ({layer.type}) delta: relative L2 error {err:.1e}"
    assert net.cost == pytest.approx(steps[0]["cost"], rel=1e-4)
    theirs = (golden / name / "train" / "stdout.txt").read_text().splitlines()[:len(LOSS_LAYERS[name])]
    assert len(printed) == len(theirs)
    for ours, line in zip(printed, theirs):
        assert_same_line(ours, line)


@pytest.mark.parametrize("name, before", [("v3mini", {12: 11, 18: 17}), ("v1mini-nodrop", {6: 5})])
def test_yolo_and_detection_backward_add_their_delta(reference, golden, name, before, capsys):
    """The layers before these loss layers are linear and feed nothing else, so Darknet's delta there after the
    whole backward pass is exactly what the loss layer added."""
    net = step1(reference, golden, name)
    for index, previous in before.items():
        layer = net.layers[index]
        x = net.layers[previous].output
        dx = np.zeros_like(net.layers[previous].delta)
        delta = layer.delta.copy()
        layer.backward(x, dx, net)
        np.testing.assert_array_equal(dx.reshape(delta.shape), delta)
        np.testing.assert_array_equal(layer.delta, delta)
        err = relative_l2(dx, np.load(golden / name / "train" / f"step1_delta_{previous:03d}.npy"))
        assert err <= 1e-4, f"{name} delta of layer {previous}: relative L2 error {err:.1e}"
        dx_again = dx.copy()
        layer.backward(x, dx_again, net)          # axpy: it adds, it does not overwrite
        np.testing.assert_array_equal(dx_again, dx + dx)


def test_region_backward_is_the_gpu_path(reference, golden, capsys):
    """backward_region_layer_gpu: delta * o(1-o) on x, y and objectness; w, h and the softmax classes unchanged."""
    net = step1(reference, golden, "v2mini")
    layer = net.layers[13]
    forward_delta = layer.delta.copy()
    x = net.layers[12].output
    dx = np.zeros_like(net.layers[12].delta)
    layer.backward(x, dx, net)
    np.testing.assert_array_equal(layer.delta, forward_delta)
    _, h, w = layer.out_shape
    shape = (2, layer.n, layer.coords + 1 + layer.classes, h * w)
    o = layer.output.reshape(shape)
    expect = forward_delta.reshape(shape).copy()
    for entry in (0, 1, layer.coords):
        expect[:, :, entry] *= (np.float32(1) - o[:, :, entry]) * o[:, :, entry]
    np.testing.assert_array_equal(dx.reshape(shape), expect)
    assert not np.array_equal(expect[:, :, 0], forward_delta.reshape(shape)[:, :, 0])


def test_loss_layers_do_nothing_outside_training(reference, golden, capsys):
    for name in LOSS_LAYERS:
        net = step1(reference, golden, name)
        capsys.readouterr()
        costs = {i: net.layers[i].cost for i in LOSS_LAYERS[name]}
        net.predict(np.load(golden / name / "train" / "X.npy"))
        assert capsys.readouterr().out == ""
        assert {i: net.layers[i].cost for i in LOSS_LAYERS[name]} == costs
        net.truth = None                    # training without truth (a forward check): no loss, no print
        net.train = True
        net.forward(np.load(golden / name / "train" / "X.npy"))
        assert capsys.readouterr().out == ""
        assert all(net.layers[i].cost is None for i in LOSS_LAYERS[name]) and net.cost is None


# ---- small hand-made cases --------------------------------------------------------------------------------------

def fake_net(truth, w=64, h=64, seen=2):
    truth = np.asarray(truth, np.float32)
    return types.SimpleNamespace(w=w, h=h, train=True, truth=truth, seen=seen, batch=truth.shape[0],
                                 rng=np.random.default_rng(0))


def yolo_layer(side=2, classes=3):
    layer = Yolo((classes + 5, side, side), classes, [0], np.array([16, 16], np.float32))
    layer.index = 7
    layer.ignore_thresh = .7
    return layer


def yolo_truth(*boxes):
    truth = np.zeros((1, 450), np.float32)
    for t, record in enumerate(boxes):
        truth[0, 5 * t:5 * t + 5] = record
    return truth


def test_yolo_two_truths_on_one_anchor_make_it_multilabel(capsys):
    """pjreddie's delta_yolo_class: when the anchor's first class delta is already set, the second truth only sets
    its own class to 1 - p, so both classes end up positive (a full rewrite would make class 0 negative)."""
    layer = yolo_layer()
    x = np.zeros((1,) + layer.in_shape, np.float32)
    layer.forward(x, fake_net(yolo_truth((.3, .3, .2, .2, 0), (.3, .3, .2, .2, 1))))
    classes = layer.delta[0, 5:, 0, 0]
    np.testing.assert_array_equal(classes, np.float32([.5, .5, -.5]))
    assert capsys.readouterr().out.endswith("count: 2\n")


def test_yolo_stops_at_the_first_empty_truth(capsys):
    layer = yolo_layer()
    x = np.zeros((1,) + layer.in_shape, np.float32)
    # anchor 16x16 on a 64-pixel net: the predicted box at cell (1, 1) is (.75, .75, .25, .25)
    layer.forward(x, fake_net(yolo_truth((.75, .75, .25, .25, 2), (0, 0, 0, 0, 0), (.25, .25, .25, .25, 1))))
    obj = layer.delta[0, 4]
    assert obj[1, 1] == np.float32(.5)          # the truth's own anchor: 1 - p
    assert obj[0, 0] == np.float32(-.5)         # the third box comes after an empty record: never read
    assert obj[0, 1] == obj[1, 0] == np.float32(-.5)
    assert capsys.readouterr().out == ("Region 7 Avg IOU: 1.000000, Class: 0.500000, Obj: 0.500000, "
                                       "No Obj: 0.500000, .5R: 1.000000, .75R: 1.000000,  count: 1\n")


def test_yolo_ignore_thresh_and_anchors_outside_the_mask(capsys):
    """The truth's best anchor (of all `num`) is not in this layer's mask: no anchor here is responsible, but the
    prediction that overlaps it by more than ignore_thresh loses its no-object delta."""
    layer = Yolo((8, 2, 2), 3, [0], np.array([16, 16, 40, 40], np.float32))
    layer.index, layer.ignore_thresh = 3, .7
    x = np.zeros((1,) + layer.in_shape, np.float32)
    x[0, 2:4] = np.log(np.float32(2.4))        # every predicted box is .6 x .6
    layer.forward(x, fake_net(yolo_truth((.25, .75, .6, .6, 1))))
    obj = layer.delta[0, 4]
    assert obj[1, 0] == 0                       # IoU 1 with the truth: ignored
    assert obj[0, 0] == obj[0, 1] == obj[1, 1] == np.float32(-.5)
    assert not layer.delta[0, [0, 1, 2, 3, 5, 6, 7]].any()
    assert capsys.readouterr().out.endswith(".5R: -nan, .75R: -nan,  count: 0\n")


def test_yolo_without_truth_prints_nan_like_c(capsys):
    layer = yolo_layer()
    layer.forward(np.zeros((1,) + layer.in_shape, np.float32), fake_net(np.zeros((1, 450))))
    assert capsys.readouterr().out == ("Region 7 Avg IOU: -nan, Class: -nan, Obj: -nan, No Obj: 0.500000, "
                                       ".5R: -nan, .75R: -nan,  count: 0\n")
    assert layer.cost == pytest.approx(4 * .25)


def test_truth_class_outside_the_layer_is_refused(capsys):
    layer = yolo_layer()
    with pytest.raises(ValueError, match="class 3"):
        layer.forward(np.zeros((1,) + layer.in_shape, np.float32), fake_net(yolo_truth((.3, .3, .2, .2, 3))))


def test_region_pulls_priors_to_anchors_only_for_the_first_12800_images(capsys):
    layer = Region((2 * 8, 3, 3), 2, 3, 4, np.array([1, 1, 2, 2], np.float32), 1, 0)
    x = np.zeros((1,) + layer.in_shape, np.float32)
    x[0, 2] = x[0, 8 + 2] = 1.0                     # raw w of both anchors: the prior pulls it back to 0
    layer.forward(x, fake_net(np.zeros((1, 150)), seen=12799))
    assert np.all(layer.delta[0, 2] == np.float32(-.01)) and np.all(layer.delta[0, 8 + 2] == np.float32(-.01))
    layer.forward(x, fake_net(np.zeros((1, 150)), seen=12800))
    assert np.all(layer.delta[0, 2] == 0)
    assert capsys.readouterr().out.endswith("count: 0\n")


def test_detection_forced_rescore_and_sqrt(capsys):
    """forced: small truths (w*h < .1) go to box 1, others to box 0 (both boxes here are equal, so by IoU box 0
    would win); rescore aims objectness at the IoU; with sqrt the w, h targets are square roots."""
    layer = Detection((11, 1, 1), 1, 2, 1, 4, 0, 1)
    layer.index, layer.forced, layer.rescore, layer.coord_scale = 0, 1, 1, 5.0
    x = np.zeros((1, 11, 1, 1), np.float32)
    x[0, 1:11, 0, 0] = .5       # confidences .5, and two boxes (.5, .5, .25, .25) once w, h are squared
    layer.forward(x, fake_net(np.float32([[1, 1, .5, .5, .36, .25]])))
    delta = layer.delta.reshape(-1)
    iou = np.float32(.25 * .25) / np.float32(.36 * .25)
    assert delta[0] == 1                                    # class 0: 1 - 0
    assert delta[1] == np.float32(-.5)                      # box 0 keeps its no-object delta
    assert delta[2] == pytest.approx(iou - .5, rel=1e-6)    # box 1, rescored
    np.testing.assert_allclose(delta[7:11], [0, 0, 5 * (.6 - .5), 0], atol=1e-6)
    assert layer.cost == squared_magnitude(layer.delta)
    assert capsys.readouterr().out == ("Detection Avg IOU: 0.694444, Pos Cat: 0.000000, All Cat: 0.000000, "
                                       "Pos Obj: 0.500000, Any Obj: 0.500000, count: 1\n")


def test_c_float_matches_printf():
    assert c_float(np.float32(.25)) == "0.250000"
    assert c_float(c_div(np.float32(0), 0)) == "-nan"
    assert c_float(c_div(np.float32(1), 0)) == "inf"
