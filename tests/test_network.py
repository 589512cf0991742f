"""The network builder against Darknet's own parse of every official cfg: shapes, weight counts, BFLOPs, table."""
import json
import pathlib

import numpy as np
import pytest

from pydarknet.cfg import read_cfg
from pydarknet.network import Network
from tests.conftest import reference_dir

OUR_CFG = pathlib.Path(__file__).resolve().parent.parent / "cfg"
OFFICIAL = sorted(p.stem for p in (reference_dir() / "cfg").glob("*.cfg")) or ["(reference absent)"]


def build(path):
    return Network(read_cfg(path), str(path))


@pytest.mark.parametrize("name", OFFICIAL)
def test_official_cfg_matches_darknet_summary(reference, golden, name):
    path = golden / "official" / f"{name}.summary.json"
    if not path.exists():
        pytest.skip(f"{path.name} is not in the reference (the classifier backbones have their table only)")
    net = build(reference / "cfg" / f"{name}.cfg")
    summary = json.loads(path.read_text())
    assert (net.w, net.h, net.c) == (summary["net"]["w"], summary["net"]["h"], summary["net"]["c"])
    assert len(net.layers) == len(summary["layers"])
    for layer, expect in zip(net.layers, summary["layers"]):
        where = f"{name} layer {expect['index']} ({expect['type']})"
        assert layer.type == expect["type"], where
        assert layer.darknet_out_shape() == (expect["out_c"], expect["out_h"], expect["out_w"]), where
        assert layer.outputs == expect["outputs"], where
        assert layer.inputs == expect["inputs"], where
        assert layer.darknet_lwhc() == (expect["l_w"], expect["l_h"], expect["l_c"]), where
        assert layer.file_floats == expect["file_floats"], where
        assert layer.nweights == expect["nweights"], where
        if expect["bflops"] is None:
            assert layer.bflops is None, where
        else:
            assert layer.bflops == pytest.approx(expect["bflops"], rel=1e-3, abs=1e-6), where
            assert f"{layer.bflops:5.3f}".strip() == expect["bflops_printed"].strip(), where


@pytest.mark.parametrize("whose", ["darknet's", "ours"])
@pytest.mark.parametrize("name", OFFICIAL)
def test_official_cfg_prints_darknet_table(reference, golden, name, whose):
    """Darknet's table and weight count for its cfg, from its cfg and from ours (cfg/NAME.cfg, our own text)."""
    printed = (golden / "official" / f"{name}.print.txt").read_text().splitlines()
    table = [line for line in printed if "Using default" not in line]
    path = reference / "cfg" / f"{name}.cfg" if whose == "darknet's" else OUR_CFG / f"{name}.cfg"
    if not path.exists():
        pytest.skip(f"cfg/{name}.cfg: we ship no cfg of that name")
    net = build(path)
    if table[-1].startswith("weights floats: "):      # the classifier backbones' tables end with the two counts
        assert table.pop() == (f"weights floats: {sum(layer.file_floats for layer in net.layers)}; "
                               f"outputs: {net.layers[-1].outputs}")
    assert net.summary().splitlines() == table


@pytest.mark.parametrize("name", ["v3mini", "v2mini", "v1mini", "clsmini"])
def test_testcfg_matches_darknet_summary(reference, golden, name):
    net = build(reference / "testcfg" / f"{name}.cfg")
    summary = json.loads((golden / name / "summary.json").read_text())
    assert net.batch == summary["net"]["cfg_batch"]
    for layer, expect in zip(net.layers, summary["layers"]):
        assert layer.darknet_out_shape() == (expect["out_c"], expect["out_h"], expect["out_w"])
        assert layer.file_floats == expect["file_floats"]
        for key in ("size", "stride", "n", "classes", "side", "coords"):
            if key in expect and hasattr(layer, key) and key != "n":
                assert getattr(layer, key) == expect[key], (layer.index, key)
        if "route_layers" in expect:
            assert layer.layers == expect["route_layers"]
        if "from" in expect:
            assert layer.source == expect["from"]
        if "mask" in expect:
            assert layer.mask == expect["mask"]
            np.testing.assert_array_equal(layer.anchors, np.float32(expect["anchors"]))
