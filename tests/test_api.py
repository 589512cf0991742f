"""The three Python APIs: libdarknet's names, darknet.py's, and the typed Detector."""
import os

import cv2
import numpy as np
import pytest

import pydarknet
from pydarknet.nms import do_nms_obj


@pytest.fixture(scope="module")
def v3mini(reference):
    return reference / "testcfg" / "v3mini.cfg", reference / "testcfg" / "v3mini.weights"


@pytest.fixture
def names_file(tmp_path):
    path = tmp_path / "three.names"
    path.write_text("cat\ndog\nbird\n")
    (tmp_path / "three.data").write_text(f"classes=3\nnames={path}\n")
    return path


def test_libdarknet_predict_and_layer_outputs(reference, golden, v3mini):
    net = pydarknet.load_network(*v3mini, 0)
    out = pydarknet.network_predict(net, np.load(golden / "v3mini" / "input.npy"))
    np.testing.assert_allclose(out.ravel(), np.load(golden / "v3mini" / "out_018.npy").ravel(), rtol=1e-5, atol=1e-6)
    assert isinstance(net.layers[0].output, np.ndarray) and net.layers[0].output.shape == (1, 8, 96, 96)
    batch = np.stack([np.load(golden / "v3mini" / "input.npy")] * 2)
    out2 = pydarknet.network_predict(net, batch)
    assert out2.shape[0] == 2
    np.testing.assert_array_equal(out2[0], out2[1])


def test_load_network_clear_resets_seen(v3mini, tmp_path):
    net = pydarknet.load_network(*v3mini)
    net.seen = 640
    pydarknet.save_weights(net, tmp_path / "w.weights")
    assert pydarknet.load_network(v3mini[0], tmp_path / "w.weights").seen == 640
    assert pydarknet.load_network(v3mini[0], tmp_path / "w.weights", clear=1).seen == 0


def test_darknet_py_detect_matches_do_nms_obj_path(reference, v3mini, names_file, tmp_path):
    net = pydarknet.load_net(*v3mini, 0)
    meta = pydarknet.load_meta(tmp_path / "three.data")
    assert meta.classes == 3 and meta.names == ["cat", "dog", "bird"]
    image = reference / "images" / "dog.png"
    result = pydarknet.detect(net, meta, image, thresh=.2)
    # independent: the libdarknet path by hand, boxes scaled to pixels
    im = pydarknet.load_image_color(str(image))
    pydarknet.network_predict(net, pydarknet.letterbox_image(im, net.w, net.h))
    h, w = im.shape[1:]
    dets = pydarknet.get_network_boxes(net, w, h, .2, .5, None, 1)
    do_nms_obj(dets, 3, .45)
    expect = sorted(((meta.names[k], float(d.prob[k]), (d.bbox[0] * w, d.bbox[1] * h, d.bbox[2] * w, d.bbox[3] * h))
                     for d in dets for k in range(3) if d.prob[k] > 0), key=lambda r: -r[1])
    assert len(result) == len(expect) > 0
    for (name, prob, box), (name2, prob2, box2) in zip(result, expect):
        assert name == name2 and prob == pytest.approx(prob2)
        np.testing.assert_allclose(box, box2, rtol=1e-5)
    assert [r[1] for r in result] == sorted((r[1] for r in result), reverse=True)


def test_detector_accepts_paths_arrays_and_batches(reference, v3mini, names_file):
    detector = pydarknet.Detector(*v3mini, names=names_file, thresh=.2)
    path = reference / "images" / "dog.png"
    from_path = detector.detect(path)
    assert from_path and all(isinstance(d, pydarknet.Detection) for d in from_path)
    assert {d.name for d in from_path} <= {"cat", "dog", "bird"}
    assert all(d.confidence > .2 for d in from_path)
    from_bgr = detector.detect(cv2.imread(str(path)))
    assert [(d.class_id, round(d.confidence, 5)) for d in from_bgr] == [(d.class_id, round(d.confidence, 5))
                                                                        for d in from_path]
    batch = detector.detect_batch([path, path])
    assert len(batch) == 2
    for got in batch:
        assert len(got) == len(from_path)
        for a, b in zip(got, from_path):
            assert a.class_id == b.class_id and a.confidence == pytest.approx(b.confidence, abs=1e-5)
            np.testing.assert_allclose(a.box, b.box, atol=1e-2)
    left, top, right, bottom = from_path[0].corners
    assert right - left == pytest.approx(from_path[0].w) and bottom - top == pytest.approx(from_path[0].h)


def test_detector_rejects_wrong_names_and_inputs(v3mini, tmp_path):
    (tmp_path / "two.names").write_text("a\nb\n")
    with pytest.raises(pydarknet.DarknetError, match="2 class names for a network of 3 classes"):
        pydarknet.Detector(*v3mini, names=tmp_path / "two.names")
    detector = pydarknet.Detector(*v3mini)
    with pytest.raises(pydarknet.DarknetError, match="cannot detect on an array"):
        detector.detect(np.zeros((5, 5), np.float32))
    with pytest.raises(pydarknet.ImageError, match="missing.png"):
        detector.detect(tmp_path / "missing.png")


@pytest.mark.parametrize("cwd", ["repo", "elsewhere"])
@pytest.mark.parametrize("spelling", ["str", "bytes"])
@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_darknet_py_accepts_bytes_and_str_paths_from_any_folder(tmp_path, monkeypatch, cwd, spelling, where):
    """Python 3 darknet.py code passes bytes (load_meta(b"cfg/coco.data")); str and bytes, absolute and relative,
    from the project folder or another one, all give the same result."""
    from tests.conftest import REPO
    files = {"data": REPO / "cfg" / "shapes.data", "cfg": REPO / "cfg" / "yolov3-tiny-shapes.cfg",
             "weights": REPO / "weights" / "yolov3-tiny-shapes.weights", "image": REPO / "data" / "shapes-sample.png"}
    expect = pydarknet.detect(pydarknet.load_net(str(files["cfg"]), str(files["weights"]), 0),
                              pydarknet.load_meta(str(files["data"])), str(files["image"]))
    folder = REPO if cwd == "repo" else tmp_path
    monkeypatch.chdir(folder)

    def spell(path):
        text = str(path) if where == "absolute" else os.path.relpath(path, folder)
        return text.encode() if spelling == "bytes" else text

    meta = pydarknet.load_meta(spell(files["data"]))
    assert meta.classes == 5 and meta.names == ["circle", "square", "triangle", "cross", "ring"]
    net = pydarknet.load_net(spell(files["cfg"]), spell(files["weights"]), 0)
    assert pydarknet.detect(net, meta, spell(files["image"])) == expect and len(expect) > 3


def test_wrong_input_size_and_unusable_device_are_one_line_errors():
    """network_predict with an image of another size, and net.to(a GPU) where none can be used (a CPU build has no
    CuPy at all): one DarknetError line that says what to do, not numpy's reshape error or a ModuleNotFoundError."""
    import numpy as np
    from pydarknet import backend, load_network, network_predict
    from pydarknet.errors import DarknetError
    from tests.conftest import REPO
    net = load_network(REPO / "cfg" / "yolov3-tiny-shapes.cfg")
    with pytest.raises(DarknetError, match=r"takes 3 x 160 x 160 .*letterbox_image.*\(3, 100, 100\)"):
        network_predict(net, np.zeros((3, 100, 100), np.float32))
    with pytest.raises(DarknetError, match="neither 'cpu' nor a GPU index"):
        net.to("gpu")
    problem = backend.gpu_problem(0)
    if problem is not None:
        with pytest.raises(DarknetError, match="GPU 0 requested") as error:
            net.to(0)
        assert "\n" not in str(error.value)
    assert network_predict(net, np.zeros((1, 3, 160, 160), np.float32)).size > 0
