"""`-tracker tensorboard|mlflow` (trackers.py): the numbers of metrics.jsonl, the cfg and the final weights' path,
read back from TensorBoard's event file and MLflow's sqlite store after the real command's os._exit; a missing
package or an unknown name is one line before training starts."""
import json
import os
import struct
import sys

import numpy as np
import pytest

from pydarknet.cli import main
from tests import test_classifier
from tests.conftest import run_cli
from tests.test_classifier import write_cfg

dataset = test_classifier.dataset       # its fixture: a small shapes-cls set, made once for this module too


def train(dataset, tmp_path, tracker):
    """`python -m pydarknet classifier train` a few iterations (-map_every and -grad_stats: every kind of key) with
    -tracker, in a process of its own; metrics.jsonl's records and the cfg."""
    cfg = write_cfg(tmp_path)
    result = run_cli("classifier", "train", dataset, cfg, "-seed", "1", "-workers", "1", "-max_batches", "4",
                     "-map_every", "2", "-grad_stats", "2", "-tracker", tracker, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in open(tmp_path / "metrics.jsonl")], cfg


def expected(records):
    """{(name, step): value} as the README says the trackers log a record: each number but the iteration (the
    step), each number of a per-layer list as name/<layer index>."""
    found = {}
    for record in records:
        for key, value in record.items():
            values = enumerate(value) if isinstance(value, list) else [(None, value)]
            for index, number in values:
                if key != "iteration" and number is not None:
                    found[(key if index is None else f"{key}/{index}", record["iteration"])] = number
    return found


def events(path):
    """The Event protobufs of a TFRecord file: per record, an 8-byte length, its 4-byte CRC, the data, its CRC."""
    from tensorboardX.proto import event_pb2
    data, pos, found = open(path, "rb").read(), 0, []
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        assert pos + 12 + length + 4 <= len(data), "a record cut short: the file was not flushed"
        found.append(event_pb2.Event.FromString(data[pos + 12:pos + 12 + length]))
        pos += 12 + length + 4
    return found


def test_tensorboard_logs_metrics_jsonl_the_cfg_and_the_final_weights(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("PYDARKNET_TRACKER_EXPERIMENT", "study")
    monkeypatch.setenv("PYDARKNET_TRACKER_RUN", "trial-1")
    records, cfg = train(dataset, tmp_path, "tensorboard")
    logdir = tmp_path / "tensorboard" / "study" / "trial-1"
    files = list(logdir.glob("events.out.tfevents.*"))
    assert len(files) == 1, os.listdir(logdir)
    scalars, texts = {}, {}
    for event in events(files[0]):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                scalars[(value.tag, event.step)] = value.simple_value
            else:
                texts[value.tag.split("/")[0]] = value.tensor.string_val[0].decode()
    want = expected(records)
    assert {"delta_rms/4", "update_ratio/0", "validation_loss", "top1", "images_s"} <= {key for key, _ in want}
    assert scalars.keys() == want.keys()
    assert all(np.float32(scalars[key]) == np.float32(value) for key, value in want.items())
    assert cfg.read_text() in texts["cfg"]
    backup = os.path.join(os.path.dirname(dataset), "backup")
    assert texts["final_weights"] == os.path.join(backup, "tiny-cls.weights")


def test_mlflow_logs_metrics_jsonl_exactly_the_cfg_and_the_final_weights(dataset, tmp_path):
    from mlflow.tracking import MlflowClient
    records, cfg = train(dataset, tmp_path, "mlflow")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny-cls")          # default: the cfg's name
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("tiny-cls-")
    want = expected(records)
    assert set(run.data.metrics) == {key for key, _ in want}
    for name in run.data.metrics:
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, name)}
        assert history == {step: value for (key, step), value in want.items() if key == name}, name
    assert run.data.params["cfg"] == str(cfg) and run.data.params["net.batch"] == "16"
    assert run.data.params["seed"] == "1" and "weights" not in run.data.params
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["tiny-cls.cfg"]
    backup = os.path.join(os.path.dirname(dataset), "backup")
    assert run.data.tags["final_weights"] == os.path.join(backup, "tiny-cls.weights")


@pytest.mark.parametrize("family, tracker, module, what", [("classifier", "mlflow", "mlflow", "MLflow"),
                                                           ("detector", "tensorboard", "tensorboardX", "tensorboardX")])
def test_a_missing_package_is_one_line_before_training(dataset, tmp_path, capsys, monkeypatch, family, tracker,
                                                       module, what):
    monkeypatch.chdir(tmp_path)         # should it train after all, its chart and metrics.jsonl land here
    for name in [module] + [name for name in sys.modules if name.startswith(module + ".")]:
        monkeypatch.setitem(sys.modules, name, None)        # its imports fail as where it is not installed
    assert main([family, "train", dataset, str(write_cfg(tmp_path)), "-tracker", tracker]) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [f'pydarknet: error: -tracker {tracker} needs {what}: '
                                f'pip install "pydarknet[{tracker}]"']
    assert out == ""            # before the layer table


def test_an_unknown_tracker_is_one_line_naming_them(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["classifier", "train", dataset, str(write_cfg(tmp_path)), "-tracker", "wandb"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["pydarknet: -tracker wandb: the trackers are tensorboard and mlflow"]
    assert main(["detector", "train", "--help"]) == 0
    assert "-tracker" in capsys.readouterr().out
