"""`-grad_stats N` (gradients.py): per-layer delta RMS and update ratio every N iterations, a warning naming each
layer whose gradient has vanished, gradients.png and metrics.jsonl's copy, on the three committed gradient cfgs."""
import json
import re
import warnings

import numpy as np
import pytest

from pydarknet.cli import main
from pydarknet.data import shapes_cls
from pydarknet.gradients import GradientWarning
from pydarknet.network import load_network
from tests.conftest import REPO

VANISHED = re.compile(r"layer (\d+) \(\w+\): its gradient has vanished")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return shapes_cls.generate(tmp_path_factory.mktemp("grad") / "set", n=60, size=64, seed=2)


def run(dataset, name, folder, capsys):
    """The layers named as vanished (GradientWarning), stdout, metrics.jsonl's records."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["classifier", "train", dataset, str(REPO / "cfg" / f"{name}.cfg"), "-max_batches", "9",
                     "-grad_stats", "3", "-seed", "1", "-workers", "1", "-chart", str(folder / "chart.png")]) == 0
    named = [int(VANISHED.match(str(w.message))[1]) for w in caught if issubclass(w.category, GradientWarning)]
    return named, capsys.readouterr().out, [json.loads(line) for line in open(folder / "metrics.jsonl")]


def test_the_logistic_stack_vanishes_and_the_batchnorm_shortcut_stack_does_not(dataset, tmp_path, capsys):
    logistic, out, records = run(dataset, "grad-logistic", tmp_path, capsys)
    assert logistic[:3] == [0, 1, 2]
    assert (tmp_path / "gradients.png").stat().st_size > 1000
    reports = [r for r in records if "delta_rms" in r]
    assert [r["iteration"] for r in reports] == [3, 6, 9]
    assert "gradients at iteration 9: layer, delta RMS, update ratio" in out
    # the report's numbers: the RMS of each layer's delta after the step, and the weights' relative change
    net = load_network(REPO / "cfg" / "grad-logistic.cfg")
    assert len(reports[-1]["delta_rms"]) == len(net.layers)
    assert reports[-1]["update_ratio"][-1] is None and reports[-1]["update_ratio"][0] > 0     # softmax: no weights
    rms = np.array(reports[-1]["delta_rms"][:20])
    assert np.all(np.diff(np.log10(rms)) > 0)          # each logistic layer passes back less than it gets
    folder = tmp_path / "bn"
    folder.mkdir()
    healthy, _, _ = run(dataset, "grad-bn-shortcut", folder, capsys)
    assert healthy == []
