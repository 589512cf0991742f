"""Fuzzing the cfg and weights readers: a mutated testcfg file gives a network or one clear pydarknet error.

Hypothesis mutates the testcfg `.cfg` texts (deleted lines, bad numbers, unknown keys and sections, truncation,
garbage bytes, duplicated sections, absurd sizes) and `.weights` files (truncation, garbage, flipped header bytes,
NaNs). Whatever comes out must be a parsed network or a DarknetError whose message is one line naming the file --
never another exception, a hang, or a network that is silently wrong. The testcfg files are only read; every mutant
is written under a temporary folder.

While fuzzing, the memory the layers may claim is capped at MEMORY_LIMIT, so "too large for this machine" is
decided the same way everywhere and a mutant never allocates gigabytes on the test machine.
"""
import functools
import math
import os
import time
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from pydarknet.cfg import read_cfg
from pydarknet.errors import CfgError, DarknetError, WeightsError
from pydarknet.layers import base
from pydarknet.layers.connected import Connected
from pydarknet.layers.convolutional import Convolutional
from pydarknet.layers.local import Local
from pydarknet.layers.maxpool import Maxpool
from pydarknet.layers.upsample import Upsample
from pydarknet.network import Network
from pydarknet.weights import WeightsWarning, load_weights, sane_random_weights
from tests.conftest import reference_dir

NAMES = ("v3mini", "v2mini", "v1mini", "clsmini")
MEMORY_LIMIT = 256 * 2**20        # bytes the layers of a mutant may claim
WORK_LIMIT = 2e8                  # multiply-adds (roughly) a mutant may cost per forward pass; more is skipped
PARAM_LIMIT = 4_000_000           # floats of parameters above which a mutant is not given random weights

EXAMPLES = int(os.environ.get("PYDARKNET_FUZZ_EXAMPLES", 250))     # more for a long hunt; CI keeps the default
FUZZ = settings(deadline=None, derandomize=EXAMPLES <= 1000, database=None, max_examples=EXAMPLES,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---- the testcfg files, read once --------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def original_text(name):
    return (reference_dir() / "testcfg" / f"{name}.cfg").read_text()


@functools.lru_cache(maxsize=None)
def original_weights(name):
    return (reference_dir() / "testcfg" / f"{name}.weights").read_bytes()


@pytest.fixture(scope="module")
def testcfg(reference):
    """The testcfg folder; skips (through `reference`) when Darknet's reference material is absent."""
    return reference / "testcfg"


@pytest.fixture(scope="module", autouse=True)
def small_memory():
    """Cap the memory layers may claim, for the whole module: absurd sizes are refused the same way everywhere."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(base, "memory_limit", lambda: MEMORY_LIMIT)
        yield MEMORY_LIMIT


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# ---- cfg mutations: each takes (draw, lines) and returns new lines --------------------------------------------------

BAD_NUMBERS = ["abc", "3.5", "-1", "0", "nan", "inf", "-inf", "1e40", "-1e40", "1e-50", str(10**12),
               str(-10**12), str(2**31), "", "0x10", "1,2", "3.0", "1e3", "+", ".", "--1", "9" * 5000, "1,,2", ","]
UNKNOWN_KEYS = ["zz_unknown", "filterz", "Filters", "sizee", "strid", "mask_", "x"]
SECTION_TYPES = ["sam", "net", "network", "batchnorm", "yolo", "region", "route", "shortcut", "convolutional",
                 "maxpool", "upsample", "reorg", "connected", "local", "dropout", "softmax", "cost", "crop",
                 "avgpool", "detection", "lstm", "deconvolutional", "", "[x]", "conv"]
ABSURD = [
    ("filters", 10**9), ("filters", 100000000), ("filters", 3), ("filters", 1), ("size", 0), ("size", 10**5),
    ("size", 100), ("stride", 0), ("stride", 10**6), ("stride", -2), ("stride", 3), ("pad", -5),
    ("padding", -100), ("padding", -1), ("padding", 10**6), ("width", 10**6), ("height", 10**6), ("width", 1),
    ("height", 7), ("width", 10**9), ("channels", 10**6), ("channels", 0), ("batch", 10**9),
    ("subdivisions", 0), ("time_steps", 0), ("time_steps", -3), ("inputs", 10**9), ("inputs", -5),
    ("layers", -100), ("layers", "-1,-1000"), ("layers", 10**6), ("layers", "0,1,2"), ("from", -100),
    ("from", 0), ("from", 1), ("mask", "0,1,99"), ("mask", -1), ("mask", "0,0,0"), ("anchors", "1,2,3"),
    ("anchors", ""), ("num", 10**9), ("num", 0), ("classes", 10**9), ("classes", 0), ("output", 10**9),
    ("output", 0), ("side", 10**4), ("side", 0), ("groups", 10**9), ("groups", 3), ("coords", 0),
    ("crop_width", 10**6), ("crop_height", 1), ("probability", 1), ("temperature", 0), ("temperature", "1e-50"),
    ("scale", "1e38"), ("alpha", "1e38"), ("reverse", 1), ("batch_normalize", 0), ("batch_normalize", 1),
    ("softmax", 1), ("background", 1), ("flatten", 1), ("tree", "x"), ("activation", "lstm"),
    ("policy", "nope"), ("type", "nope"), ("steps", "1,2"),
]


def _pick(draw, n):
    return draw(st.integers(0, max(n - 1, 0)))


def _sections(lines):
    """(start, end) line ranges of the sections, header included."""
    starts = [i for i, line in enumerate(lines) if line.strip().startswith("[")]
    return list(zip(starts, starts[1:] + [len(lines)]))


def delete_lines(draw, lines):
    if not lines:
        return lines
    start = _pick(draw, len(lines))
    count = draw(st.integers(1, 3))
    return lines[:start] + lines[start + count:]


def bad_value(draw, lines):
    options = [i for i, line in enumerate(lines) if "=" in line]
    if not options:
        return lines
    i = options[_pick(draw, len(options))]
    key = lines[i].split("=", 1)[0]
    return lines[:i] + [f"{key}={draw(st.sampled_from(BAD_NUMBERS))}"] + lines[i + 1:]


def small_value(draw, lines):
    """A plausible but different number: the shape arithmetic of every layer gets exercised."""
    options = [i for i, line in enumerate(lines) if "=" in line and not line.startswith(("anchors", "mask"))]
    if not options:
        return lines
    i = options[_pick(draw, len(options))]
    key = lines[i].split("=", 1)[0]
    value = draw(st.one_of(st.integers(-3, 12), st.sampled_from(["0.5", "-0.5", "2.0", "1e-3", "100", "1,2"])))
    return lines[:i] + [f"{key}={value}"] + lines[i + 1:]


def unknown_key(draw, lines):
    i = _pick(draw, len(lines) + 1)
    return lines[:i] + [f"{draw(st.sampled_from(UNKNOWN_KEYS))}={draw(st.sampled_from(BAD_NUMBERS[:6]))}"] + lines[i:]


def unknown_section(draw, lines):
    i = _pick(draw, len(lines) + 1)
    return lines[:i] + [f"[{draw(st.sampled_from(SECTION_TYPES))}]"] + lines[i:]


def duplicate_section(draw, lines):
    sections = _sections(lines)
    if not sections:
        return lines
    start, end = sections[_pick(draw, len(sections))]
    at = _pick(draw, len(lines) + 1)
    return lines[:at] + lines[start:end] + lines[at:]


def absurd_size(draw, lines):
    """Set key=value in one section: replace the key's line, or add it after the header."""
    sections = _sections(lines)
    if not sections:
        return lines
    key, value = draw(st.sampled_from(ABSURD))
    start, end = sections[_pick(draw, len(sections))]
    for i in range(start + 1, end):
        if lines[i].replace(" ", "").startswith(key + "="):
            return lines[:i] + [f"{key}={value}"] + lines[i + 1:]
    return lines[:start + 1] + [f"{key}={value}"] + lines[start + 1:]


LINE_MUTATIONS = [delete_lines, bad_value, small_value, small_value, unknown_key, unknown_section, duplicate_section,
                  absurd_size, absurd_size]


def truncate(draw, data):
    return data[:_pick(draw, len(data) + 1)]


def garbage(draw, data):
    at = _pick(draw, len(data) + 1)
    junk = draw(st.one_of(st.binary(min_size=1, max_size=8),
                          st.sampled_from([b"\0", b"\xff\xfe", b"\x80", b"\x0c", b"\x0b", b"\r", b"\x1c",
                                           "\u2028".encode(), b"\xef\xbb\xbf", b"\x1b[31m", b"=", b"[", b"]"])))
    return data[:at] + junk + data[at:]


BYTE_MUTATIONS = [truncate, garbage]


@st.composite
def mutated_cfg(draw):
    """(testcfg name, mutated cfg bytes, names of the mutations applied)."""
    name = draw(st.sampled_from(NAMES))
    lines = original_text(name).split("\n")
    applied = []
    for _ in range(draw(st.integers(1, 3))):
        mutation = draw(st.sampled_from(LINE_MUTATIONS))
        applied.append(mutation.__name__)
        lines = mutation(draw, lines)
    data = "\n".join(lines).encode("utf-8")
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        mutation = draw(st.sampled_from(BYTE_MUTATIONS))
        applied.append(mutation.__name__)
        data = mutation(draw, data)
    return name, data, applied


# ---- the property ---------------------------------------------------------------------------------------------------

def assert_clear(error, path):
    """A pydarknet error's message: one line that names the file."""
    message = str(error)
    assert isinstance(error, DarknetError), f"{type(error).__name__}: {message}"
    assert message.splitlines() == [message], f"not one line: {message!r}"
    assert str(path) in message, f"does not name {path}: {message!r}"


def build(path):
    return Network(read_cfg(path), str(path))


def work(layer):
    """About how many multiply-adds the layer's forward pass costs."""
    c = layer.in_shape[0]
    if isinstance(layer, Convolutional):
        return layer.outputs * layer.size ** 2 * (c // layer.groups)
    if isinstance(layer, Local):
        return layer.outputs * layer.size ** 2 * c
    if isinstance(layer, Maxpool):
        return layer.outputs * layer.size ** 2
    if isinstance(layer, Connected):
        return layer.outputs * layer.inputs
    if isinstance(layer, Upsample) and layer.reverse:
        return layer.outputs * layer.stride ** 2
    return max(layer.outputs, layer.inputs)


def extreme(net):
    """Options that make non-finite outputs Darknet's own answer (a huge scale, a tiny softmax temperature)."""
    for layer in net.layers:
        for key in ("scale", "alpha", "beta", "temperature"):
            value = getattr(layer, key, None)
            if value is not None and not 1e-3 <= abs(value) <= 1e3:
                return True
    return False


def check_network(net, name, path):
    """A built mutant: consistent shapes; the original weights load or warn; predict is finite or a clear error."""
    shape = net.input_shape
    for layer in net.layers:
        assert min(layer.out_shape) > 0, (layer.index, layer.out_shape)
        assert layer.section is not None and layer.index is not None
        assert layer.in_shape == shape, (layer.index, layer.in_shape, shape)
        shape = layer.out_shape
    params = sum(layer.file_floats for layer in net.layers)
    total_work = sum(work(layer) for layer in net.layers)
    note(f"params={params} work={total_work:.3g}")
    if params > PARAM_LIMIT or total_work > WORK_LIMIT:
        event("built, too costly to run")
        return
    sane_random_weights(net, seed=1)
    weights = reference_dir() / "testcfg" / f"{name}.weights"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            load_weights(net, weights)
        except WeightsError as e:   # the file's floats are finite, but read at a shifted offset some may be NaN
            assert_clear(e, weights)
            sane_random_weights(net, seed=1)
            caught.append(e)
    for warning in caught:
        assert str(weights) in str(getattr(warning, "message", warning))
    mismatch = bool(caught)         # the cfg no longer fits its weights file, and was told so
    x = np.random.default_rng(0).uniform(0, 1, net.input_shape).astype(np.float32)
    try:
        out = net.predict(x)
    except DarknetError as e:
        assert_clear(e, path)
        return
    assert out.size == net.output_layer.outputs
    event("ran, weights " + ("mismatched" if mismatch else "matched"))
    if not mismatch and not extreme(net):
        assert np.all(np.isfinite(out)), "a network that loaded its weights without a warning gave non-finite output"


@FUZZ
@given(case=mutated_cfg())
def test_mutated_cfg_gives_a_network_or_one_clear_error(testcfg, small_memory, folder, case):
    name, data, applied = case
    note(f"{name}: {applied}")
    path = folder / "mutant.cfg"
    path.write_bytes(data)
    try:
        net = build(path)
    except DarknetError as e:
        assert_clear(e, path)
        event(f"refused: {type(e).__name__}")
        return
    event("built")
    check_network(net, name, path)


@FUZZ
@given(name=st.sampled_from(NAMES), data=st.data())
def test_a_bad_value_is_an_error_or_reported_unused(testcfg, small_memory, folder, name, data):
    """Replacing a value by something no reader accepts is never silently ignored: an error at its line, or unused."""
    lines = original_text(name).split("\n")
    options = [i for i, line in enumerate(lines) if "=" in line]
    i = data.draw(st.sampled_from(options))
    key = lines[i].split("=", 1)[0].strip()
    value = data.draw(st.sampled_from(["abc", "nan", "-inf", "1e40", "7x", "0x10"]))
    lines[i] = f"{key}={value}"
    path = folder / "bad-value.cfg"
    path.write_text("\n".join(lines))
    try:
        net = build(path)
    except CfgError as e:
        assert_clear(e, path)
        assert f"{path}:{i + 1}:" in str(e), f"line {i + 1} ({key}) is not named: {e}"
        return
    assert (key, value, i + 1) in [(k, v, line) for _, k, v, line in net.unused], f"{key}={value} silently ignored"


@FUZZ
@given(name=st.sampled_from(NAMES), data=st.data())
def test_unknown_keys_are_reported_with_their_line(testcfg, folder, name, data):
    lines = original_text(name).split("\n")
    sections = _sections(lines)
    start, end = data.draw(st.sampled_from(sections))
    at = data.draw(st.integers(start + 1, end))
    key = data.draw(st.sampled_from(UNKNOWN_KEYS))
    lines.insert(at, f"{key}=1")
    path = folder / "unknown-key.cfg"
    path.write_text("\n".join(lines))
    net = build(path)
    assert (key, "1", at + 1) in [(k, v, line) for _, k, v, line in net.unused]


@FUZZ
@given(name=st.sampled_from(NAMES), data=st.data())
def test_a_repeated_key_is_reported_unused(testcfg, folder, name, data):
    """The first of two equal keys wins, as in Darknet, and the second is reported as Darknet's option_unused does."""
    lines = original_text(name).split("\n")
    options = [i for i, line in enumerate(lines) if "=" in line]
    i = data.draw(st.sampled_from(options))
    key = lines[i].split("=", 1)[0].strip()
    lines.insert(i + 1, f"{key}=abc")
    path = folder / "repeated-key.cfg"
    path.write_text("\n".join(lines))
    net = build(path)
    assert (key, "abc", i + 2) in [(k, v, line) for _, k, v, line in net.unused]


# ---- small generated networks: every layer type, awkward shapes -------------------------------------------------

GENERATED_OPTIONS = {
    "convolutional": ["filters", "size", "stride", "pad", "padding", "groups", "batch_normalize"],
    "maxpool": ["size", "stride", "padding"], "route": ["layers"], "shortcut": ["from"], "upsample": ["stride"],
    "reorg": ["stride", "reverse"], "connected": ["output", "batch_normalize"],
    "local": ["filters", "size", "stride", "pad"],
    "softmax": ["groups"], "crop": ["crop_width", "crop_height"], "yolo": ["classes", "num", "mask"],
    "region": ["classes", "num", "coords", "softmax", "background"],
    "detection": ["classes", "num", "coords", "side", "softmax"], "dropout": [], "avgpool": [], "cost": [],
    "batchnorm": [],
}
SMALL = st.sampled_from([-2, -1, 0, 1, 2, 3, 4, 5, 7, 8, 9, 16])


@st.composite
def generated_cfg(draw):
    """A [net] of a few pixels and up to six layers of any type, with small (possibly nonsensical) options."""
    text = (f"[net]\nwidth={draw(st.integers(1, 12))}\nheight={draw(st.integers(1, 12))}\n"
            f"channels={draw(st.integers(1, 5))}\nbatch={draw(st.integers(1, 2))}\n")
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(sorted(GENERATED_OPTIONS)))
        text += f"[{kind}]\n"
        for key in GENERATED_OPTIONS[kind]:
            if draw(st.integers(0, 9)) < 7:
                if key in ("layers", "mask"):
                    items = st.integers(-3, 3) if key == "layers" else st.integers(0, 3)
                    value = ",".join(str(v) for v in draw(st.lists(items, min_size=1, max_size=3)))
                else:
                    value = draw(SMALL)
                text += f"{key}={value}\n"
    return text


@FUZZ
@given(text=generated_cfg())
def test_generated_cfg_gives_a_network_or_one_clear_error(small_memory, folder, text):
    path = folder / "generated.cfg"
    path.write_text(text)
    try:
        net = build(path)
    except DarknetError as e:
        assert_clear(e, path)
        event("refused")
        return
    event("built")
    sane_random_weights(net, seed=2)
    x = np.random.default_rng(0).uniform(0, 1, (2,) + net.input_shape).astype(np.float32)
    out = net.predict(x)
    assert out.shape == (2,) + net.output_layer.out_shape
    assert np.all(np.isfinite(out)) or extreme(net)


# ---- weights mutations ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def original_network(name):
    return build(reference_dir() / "testcfg" / f"{name}.cfg")


def header_size(data):
    major, minor = (int(v) for v in np.frombuffer(data[:8], "<i4"))
    return 20 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 16


@st.composite
def mutated_weights(draw):
    name = draw(st.sampled_from(NAMES))
    data = original_weights(name)
    kind = draw(st.sampled_from(["truncate", "append", "header", "garbage", "empty", "nan", "inf", "flip"]))
    if kind == "truncate":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif kind == "append":
        data = data + draw(st.binary(min_size=1, max_size=64))
    elif kind == "header":
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, 19))
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
    elif kind == "garbage":
        data = draw(st.binary(max_size=256))
    elif kind == "empty":
        data = b""
    elif kind in ("nan", "inf"):
        at = header_size(data) + 4 * draw(st.integers(0, (len(data) - 20) // 4 - 1))
        value = np.float32(np.nan if kind == "nan" else -np.inf).tobytes()
        data = data[:at] + value + data[at + 4:]
    else:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1:]
    return name, kind, data


@FUZZ
@given(case=mutated_weights())
def test_mutated_weights_load_warn_or_raise_one_clear_error(testcfg, folder, case):
    name, kind, data = case
    note(f"{name}: {kind}, {len(data)} bytes")
    net = original_network(name)
    path = folder / "mutant.weights"
    path.write_bytes(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            load_weights(net, path)
        except WeightsError as e:
            assert_clear(e, path)
            if kind in ("nan", "inf"):
                assert "layer " in str(e)
            return
    messages = [str(w.message) for w in caught if issubclass(w.category, WeightsWarning)]
    assert len(messages) == len(caught), [str(w.message) for w in caught]
    for message in messages:
        assert message.splitlines() == [message] and str(path) in message, message
    assert kind not in ("nan", "inf"), "NaN or infinite weights loaded without an error"
    # Never silently wrong: the file loads without a word only when it holds exactly this network's floats.
    head = header_size(data)
    floats = [layer.file_floats for layer in net.layers]
    expected = head + 4 * sum(floats)
    if len(data) == expected:
        assert not messages, messages
        return
    assert len(messages) == 1, f"{len(data)} bytes, {expected} expected, warnings: {messages}"
    if len(data) < expected:
        have, end = (len(data) - head) // 4, 0
        for layer, count in zip(net.layers, floats):
            end += count
            if count and end > have:
                assert f"layer {layer.index} " in messages[0] or f"layers {layer.index} " in messages[0], messages
                break
    else:
        assert f"{len(data) - expected} bytes left over" in messages[0], messages


def test_weights_file_that_is_missing_or_a_folder(testcfg, folder):
    net = original_network("clsmini")
    for path in (folder / "absent.weights", folder):
        with pytest.raises(WeightsError) as error:
            load_weights(net, path)
        assert_clear(error.value, path)


# ---- absurd sizes are refused before anything is allocated ---------------------------------------------------------

def refused_quickly(path):
    """Build the cfg; it must fail with a CfgError, and tracemalloc must see (almost) nothing allocated."""
    tracemalloc.start()
    try:
        with pytest.raises(CfgError) as error:
            build(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_clear(error.value, path)
    assert peak < 8 * 2**20, f"{peak / 2**20:.0f} MiB allocated before the error: {error.value}"
    return str(error.value)


def with_option(text, section_line, key, value):
    """The cfg text with key=value set in the section whose header is on line `section_line` (1-based)."""
    lines = text.split("\n")
    start = section_line - 1
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    for i in range(start + 1, end):
        if lines[i].replace(" ", "").startswith(key + "="):
            lines[i] = f"{key}={value}"
            break
    else:
        lines.insert(start + 1, f"{key}={value}")
    return "\n".join(lines)


def test_absurd_weights_are_refused_before_allocating(testcfg, tmp_path):
    text = original_text("v3mini")
    header = text.split("\n").index("[convolutional]") + 1       # layer 0
    text = with_option(with_option(text, header, "filters", 100000000), header, "size", 100)
    path = tmp_path / "huge-filters.cfg"
    path.write_text(text)
    message = refused_quickly(path)
    assert f"{path}:{header}: layer 0 [convolutional]" in message


def test_huge_weights_with_small_output_are_refused_before_allocating(tmp_path, small_memory):
    """A connected layer whose biases alone would fit but whose weights would not: nothing is allocated first."""
    output = MEMORY_LIMIT // 4 // 2 + 1           # biases half the limit, weights (4 inputs) twice the limit
    path = tmp_path / "huge-connected.cfg"
    path.write_text(f"[net]\ninputs=4\nbatch=1\n\n[connected]\noutput={output}\nactivation=linear\n")
    message = refused_quickly(path)
    assert f"{path}:5: layer 0 [connected]" in message


def test_enormous_outputs_are_refused_before_allocating(testcfg, tmp_path):
    lines = original_text("v2mini").split("\n")
    lines = [f"width={10**6}" if line.startswith("width=") else
             f"height={10**6}" if line.startswith("height=") else line for line in lines]
    path = tmp_path / "huge-input.cfg"
    path.write_text("\n".join(lines))
    message = refused_quickly(path)
    assert str(path) in message and "GiB" in message


def test_outputs_that_only_together_exceed_memory_are_refused(testcfg, tmp_path, small_memory):
    """Each layer's output fits, the network's do not: the layer where they stop fitting is named."""
    lines = original_text("v3mini").split("\n")
    side = int(math.sqrt(MEMORY_LIMIT / 4 / 2 / 8 * 0.6))          # layer 0's output: 60% of the limit
    lines = [f"width={side}" if line.startswith("width=") else
             f"height={side}" if line.startswith("height=") else line for line in lines]
    path = tmp_path / "big-input.cfg"
    path.write_text("\n".join(lines))
    message = refused_quickly(path)
    assert "layer " in message and "GiB" in message


# ---- regressions: cfgs whose Darknet kernels would run outside their buffers, or never finish ----------------------

@pytest.mark.parametrize("text, where", [
    # shortcut_cpu steps through both inputs by the widths' ratio: a 1x4 source added to a 2x4 layer overruns
    ("[net]\nwidth=1\nheight=4\nchannels=1\n[convolutional]\nfilters=1\n[maxpool]\nsize=2\nstride=2\n"
     "[upsample]\n[shortcut]\nfrom=0\n", ":12: [shortcut] from"),
    # reorg_cpu divides the channels by stride^2 (3 channels: by zero)
    ("[net]\nwidth=4\nheight=4\nchannels=3\n[reorg]\nstride=2\n", ":6: [reorg] stride"),
    # region adds `background` to the classes of its softmax
    ("[net]\nwidth=2\nheight=2\nchannels=5\n[region]\nclasses=1\ncoords=3\nsoftmax=1\nbackground=5\n",
     ":9: [region] background"),
    # whole maxpool windows in the padding give -FLT_MAX; negative padding is not Darknet's arithmetic either
    ("[net]\nwidth=4\nheight=4\nchannels=1\n[maxpool]\nsize=1\nstride=1\npadding=4\n", ":8: [maxpool] padding"),
    ("[net]\nwidth=4\nheight=4\nchannels=1\n[maxpool]\nsize=2\nstride=2\npadding=-1\n", ":8: [maxpool] padding"),
    # numbers Darknet's int and float cannot hold
    ("[net]\nwidth=4\nheight=4\nchannels=1\nmax_batches=10000000000\n[avgpool]\n", ":5: [net] max_batches"),
    ("[net]\nwidth=4\nheight=4\nchannels=1\n[upsample]\nscale=1e39\n", ":6: [upsample] scale"),
    ("[net]\nwidth=4\nheight=4\nchannels=1\ntime_steps=0\n[avgpool]\n", ":5: [net] time_steps"),
])
def test_cfg_darknet_would_run_out_of_bounds_is_an_error(tmp_path, text, where):
    path = tmp_path / "bad.cfg"
    path.write_text(text)
    with pytest.raises(CfgError) as error:
        build(path)
    assert_clear(error.value, path)
    assert f"{path}{where}" in str(error.value)


def test_batchnorm_layer_runs(tmp_path):
    path = tmp_path / "bn.cfg"
    path.write_text("[net]\nwidth=3\nheight=2\nchannels=2\n[batchnorm]\n")
    net = sane_random_weights(build(path))
    out = net.predict(np.ones((2, 2, 3), np.float32))
    assert out.shape == (2, 2, 3) and np.all(np.isfinite(out))


def test_a_very_long_number_is_refused_at_once(tmp_path):
    """The number patterns are linear: a megabyte of digits is read and refused in well under a second."""
    path = tmp_path / "long.cfg"
    path.write_text(f"[net]\nwidth=4\nheight=4\nchannels=1\nmomentum={'9' * 10**6}x\n[avgpool]\n")
    start = time.perf_counter()
    with pytest.raises(CfgError) as error:
        build(path)
    assert time.perf_counter() - start < 2
    assert f"{path}:5: [net] momentum" in str(error.value)
