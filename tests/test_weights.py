"""Reading and writing .weights exactly as Darknet does."""
import numpy as np
import pytest

from pydarknet.cfg import read_cfg
from pydarknet.errors import WeightsError
from pydarknet.network import Network
from pydarknet.weights import WeightsWarning, covers_every_layer, load_weights, save_weights

NETS = ["v3mini", "v2mini", "v1mini", "v1mini-nodrop", "clsmini"]


def build(reference, name):
    return Network(read_cfg(reference / "testcfg" / f"{name}.cfg"), name)


@pytest.mark.parametrize("name", NETS)
def test_round_trip_is_byte_identical(reference, tmp_path, name):
    source = reference / "testcfg" / f"{name}.weights"
    net = build(reference, name)
    load_weights(net, source)
    save_weights(net, tmp_path / "out.weights")
    assert (tmp_path / "out.weights").read_bytes() == source.read_bytes()


@pytest.mark.parametrize("name", NETS)
def test_file_size_is_what_the_layers_read(reference, name):
    net = build(reference, name)
    expect = 20 + 4 * sum(layer.file_floats for layer in net.layers)   # header 3*int32 + uint64 seen
    assert (reference / "testcfg" / f"{name}.weights").stat().st_size == expect


def test_header_and_seen(reference, tmp_path):
    net = build(reference, "v3mini")
    load_weights(net, reference / "testcfg" / "v3mini.weights")
    assert net.weights_header == (0, 2, 0) and net.seen == 0
    net.seen = 123456789012
    save_weights(net, tmp_path / "seen.weights")
    head = np.fromfile(tmp_path / "seen.weights", "<i4", 3)
    assert list(head) == [0, 2, 0]
    assert np.fromfile(tmp_path / "seen.weights", "<u8", 1, offset=12)[0] == 123456789012
    again = build(reference, "v3mini")
    load_weights(again, tmp_path / "seen.weights")
    assert again.seen == 123456789012


def test_version_0_1_has_int32_seen_and_round_trips(reference, tmp_path):
    body = (reference / "testcfg" / "clsmini.weights").read_bytes()[20:]
    old = np.asarray([0, 1, 0, 640], "<i4").tobytes() + body
    (tmp_path / "old.weights").write_bytes(old)
    net = build(reference, "clsmini")
    load_weights(net, tmp_path / "old.weights")
    assert net.seen == 640 and net.weights_header == (0, 1, 0)
    reference_net = build(reference, "clsmini")
    load_weights(reference_net, reference / "testcfg" / "clsmini.weights")
    for a, b in zip(net.layers, reference_net.layers):
        for x, y in zip(a.weight_arrays(), b.weight_arrays()):
            np.testing.assert_array_equal(x, y)
    save_weights(net, tmp_path / "again.weights")
    assert (tmp_path / "again.weights").read_bytes() == old


def test_transposed_connected_weights(reference, tmp_path):
    """Files with major or minor > 1000 store connected weights as inputs x outputs (Darknet's transpose rule)."""
    net = build(reference, "v1mini")
    load_weights(net, reference / "testcfg" / "v1mini.weights")
    connected = net.layers[6]
    net.weights_header = (0, 1001, 0)
    save_weights(net, tmp_path / "t.weights")
    floats = np.fromfile(tmp_path / "t.weights", "<f4", offset=16)
    start = sum(layer.file_floats for layer in net.layers[:6]) + connected.biases.size
    stored = floats[start:start + connected.weights.size].reshape(connected.inputs, connected.outputs)
    np.testing.assert_array_equal(stored.T, connected.weights)
    other = build(reference, "v1mini")
    load_weights(other, tmp_path / "t.weights")
    np.testing.assert_array_equal(other.layers[6].weights, connected.weights)


def test_partial_file_loads_the_layers_it_holds(reference, tmp_path):
    full = build(reference, "v3mini")
    load_weights(full, reference / "testcfg" / "v3mini.weights")
    save_weights(full, tmp_path / "first6.weights", upto=6)
    net = build(reference, "v3mini")
    before = [a.copy() for layer in net.layers[6:] for a in layer.weight_arrays()]
    with pytest.warns(WeightsWarning, match="partial"):
        loaded = load_weights(net, tmp_path / "first6.weights")
    assert loaded == 4   # of layers 0..5, the convolutions 0, 2, 4 and 5 hold weights
    for a, b in zip(net.layers[:6], full.layers[:6]):
        for x, y in zip(a.weight_arrays(), b.weight_arrays()):
            np.testing.assert_array_equal(x, y)
    after = [a for layer in net.layers[6:] for a in layer.weight_arrays()]
    for x, y in zip(before, after):
        np.testing.assert_array_equal(x, y)


def test_truncated_file_names_the_layer(reference, tmp_path):
    data = (reference / "testcfg" / "v3mini.weights").read_bytes()
    net = build(reference, "v3mini")
    cut = 20 + 4 * (sum(layer.file_floats for layer in net.layers[:9]) + 100)   # 100 floats into layer 9
    (tmp_path / "cut.weights").write_bytes(data[:cut])
    with pytest.warns(WeightsWarning, match=r"cut.weights: truncated inside layer 9 \(convolutional\)"):
        load_weights(net, tmp_path / "cut.weights")


def test_bytes_left_over_are_reported(reference, tmp_path):
    data = (reference / "testcfg" / "clsmini.weights").read_bytes()
    (tmp_path / "big.weights").write_bytes(data + b"\0" * 64)
    with pytest.warns(WeightsWarning, match="64 bytes left over"):
        load_weights(build(reference, "clsmini"), tmp_path / "big.weights")


@pytest.mark.parametrize("header", [[7, 7, 7], [-1, 0, 0], [0x46464952, 0, 0]])
def test_wrong_version_is_an_error(reference, tmp_path, header):
    data = (reference / "testcfg" / "clsmini.weights").read_bytes()
    (tmp_path / "bad.weights").write_bytes(np.asarray(header, "<i4").tobytes() + data[12:])
    with pytest.raises(WeightsError, match=r"bad.weights: unsupported weights version"):
        load_weights(build(reference, "clsmini"), tmp_path / "bad.weights")


def test_missing_and_short_files(reference, tmp_path):
    net = build(reference, "clsmini")
    with pytest.raises(WeightsError, match="not found"):
        load_weights(net, tmp_path / "nope.weights")
    (tmp_path / "short.weights").write_bytes(b"\0\0\0")
    with pytest.raises(WeightsError, match="too short"):
        load_weights(net, tmp_path / "short.weights")


def test_save_is_atomic(reference, tmp_path, monkeypatch):
    """A failed save leaves the previous file intact and no temp file behind."""
    net = build(reference, "clsmini")
    load_weights(net, reference / "testcfg" / "clsmini.weights")
    target = tmp_path / "keep.weights"
    save_weights(net, target)
    good = target.read_bytes()
    net.layers[0].weights = None   # makes the writer fail half way
    with pytest.raises(Exception):
        save_weights(net, target)
    assert target.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["keep.weights"]


def test_darknet_initialisation(reference):
    net = build(reference, "v3mini").init_random(seed=1)
    conv = net.layers[0]
    assert np.all(conv.scales == 1) and np.all(conv.rolling_mean == 0) and np.all(conv.rolling_variance == 0)
    assert np.all(conv.biases == 0)
    scale = np.sqrt(2.0 / (3 * 3 * 3))
    assert abs(conv.weights.std() / scale - 1) < 0.2      # scale * N(0, 1)
    v1 = build(reference, "v1mini").init_random(seed=1)
    connected = v1.layers[6]
    bound = np.sqrt(2.0 / connected.inputs)
    assert np.abs(connected.weights).max() <= bound and np.abs(connected.weights).max() > 0.9 * bound


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_written_weights_honour_the_umask(tmp_path, umask):
    """Weights come out as a plain open() makes them (Darknet's fopen: 0666 less the umask), not mkstemp's 0600."""
    from tests.conftest import REPO, run_cli
    cfg = REPO / "cfg" / "yolov3-tiny-shapes.cfg"
    assert run_cli("randweights", cfg, "random.weights", cwd=tmp_path, umask=umask).returncode == 0
    assert run_cli("partial", cfg, "random.weights", "first.weights", "2", cwd=tmp_path, umask=umask).returncode == 0
    for name in ("random.weights", "first.weights"):
        assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(0o666 & ~umask), name
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_a_file_that_covers_every_layer_skips_the_random_draw(reference, tmp_path, monkeypatch):
    """load_network draws random weights only where the file leaves some (the draw was a third of `detect`'s
    start-up); a partial file gets them, as before, and the same values."""
    from pydarknet.network import load_network
    cfg = str(reference / "testcfg" / "v3mini.cfg")
    full, partial = tmp_path / "full.weights", tmp_path / "partial.weights"
    net = Network(read_cfg(cfg), cfg).init_random(3)
    save_weights(net, full)
    data = full.read_bytes()
    cut = 20 + 4 * sum(layer.file_floats for layer in net.layers[:2] if layer.weight_arrays())
    partial.write_bytes(data[:cut])
    drawn = []
    original = Network.init_random
    monkeypatch.setattr(Network, "init_random", lambda self, seed=None: drawn.append(seed) or original(self, seed))
    loaded = load_network(cfg, full)
    assert drawn == []
    for a, b in zip(loaded.layers, net.layers):
        for x, y in zip(a.weight_arrays(), b.weight_arrays()):
            np.testing.assert_array_equal(x, y)
    with pytest.warns(WeightsWarning, match="partial"):
        load_network(cfg, partial)
    assert drawn == [None]
    assert not covers_every_layer(net, tmp_path / "missing.weights") and covers_every_layer(net, full)


def test_a_seed_fixes_the_layers_a_partial_file_leaves_out(reference, tmp_path):
    """Fine-tuning from a partial file (yolov3-tiny.conv.15): with -seed the head starts the same every time (issue
    23's runs could not be repeated), another seed draws another head, and the file's layers are the file's."""
    from pydarknet.network import load_network
    cfg = str(reference / "testcfg" / "v3mini.cfg")
    net = Network(read_cfg(cfg), cfg).init_random(3)
    save_weights(net, tmp_path / "first2.weights", upto=2)
    with pytest.warns(WeightsWarning, match="partial"):
        one, again, other = (load_network(cfg, tmp_path / "first2.weights", seed=seed) for seed in (1, 1, 2))
    fresh = Network(read_cfg(cfg), cfg).init_random(1)
    for index, (a, b, c, d, e) in enumerate(zip(one.layers, again.layers, other.layers, net.layers, fresh.layers)):
        for x, y, z, from_file, drawn in zip(a.weight_arrays(), b.weight_arrays(), c.weight_arrays(),
                                             d.weight_arrays(), e.weight_arrays()):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x, from_file if index < 2 else drawn)
            if index >= 2 and x.size > 1 and np.any(x != x.flat[0]):
                assert not np.array_equal(x, z), f"layer {index}: seeds 1 and 2 drew the same weights"
