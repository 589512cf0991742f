"""`detector train` end to end on a tiny network and dataset: the loss falls, backups appear on Darknet's
schedule, a run resumes where its weights left off, Ctrl-C and NaN losses keep the work."""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pydarknet.cli import main
from pydarknet.shapes import generate
from pydarknet.weights import read_header
from tests.conftest import REPO

CFG = """
[net]
batch=4
subdivisions=1
width=64
height=64
channels=3
momentum=0.9
decay=0.0005
learning_rate={rate}
burn_in=10
max_batches=100
policy=steps
steps=80
scales=.1

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=30
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1,2
anchors=8,8, 16,16, 32,32
classes=5
num=3
jitter=.1
ignore_thresh=.7
truth_thresh=1
random=0
"""

LINE = re.compile(r"^(\d+): ([-\d.naif]+), ([-\d.naif]+) avg, ([\d.]+) rate, [\d.]+ seconds, (\d+) images")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("shapes"), n=24, size=64, seed=0).data


def iterations(text):
    return [(int(m[1]), float(m[2]), float(m[3])) for m in map(LINE.match, text.splitlines()) if m]


def write_cfg(folder, rate=.001):
    path = folder / "tiny.cfg"
    path.write_text(CFG.format(rate=rate))
    return path


def test_train_backups_and_resume(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write_cfg(tmp_path)
    backup = os.path.join(os.path.dirname(dataset), "backup")
    assert main(["detector", "train", dataset, str(cfg), "-seed", "1", "-workers", "1"]) == 0
    out = capsys.readouterr().out
    its = iterations(out)
    assert [i for i, _, _ in its] == list(range(1, 101))
    first, last = np.mean([loss for _, loss, _ in its[:10]]), np.mean([loss for _, loss, _ in its[-10:]])
    assert last < first * .7, f"loss did not fall: {first:.2f} -> {last:.2f}"
    assert sorted(os.listdir(backup)) == ["tiny.backup", "tiny_100.weights", "tiny_final.weights"]
    assert read_header(open(os.path.join(backup, "tiny_final.weights"), "rb"), "w")[1] == 400   # seen = 100 * 4
    assert os.path.getsize("chart.png") > 1000
    # resume: the iteration count continues from the weights' `seen`
    assert main(["detector", "train", dataset, str(cfg), os.path.join(backup, "tiny_100.weights"),
                 "-max_batches", "105", "-seed", "2", "-workers", "1"]) == 0
    assert [i for i, _, _ in iterations(capsys.readouterr().out)] == [101, 102, 103, 104, 105]
    # -clear starts the count again
    assert main(["detector", "train", dataset, str(cfg), os.path.join(backup, "tiny_100.weights"), "-clear",
                 "-max_batches", "3", "-seed", "2", "-workers", "1"]) == 0
    assert [i for i, _, _ in iterations(capsys.readouterr().out)] == [1, 2, 3]


def test_nan_loss_stops_with_a_message(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write_cfg(tmp_path, rate=1e12)
    assert main(["detector", "train", dataset, str(cfg), "-seed", "1", "-workers", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(r"tiny.cfg: the loss became (nan|inf) at iteration \d+: training stopped", err), err


def test_ctrl_c_saves_the_backup(dataset, tmp_path):
    cfg = write_cfg(tmp_path)
    backup = os.path.join(os.path.dirname(dataset), "backup")
    for name in os.listdir(backup) if os.path.isdir(backup) else []:
        os.unlink(os.path.join(backup, name))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "pydarknet", "detector", "train", dataset, str(cfg),
                             "-max_batches", "100000", "-workers", "1", "-chart", ""],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    seen = 0
    for line in proc.stdout:
        if LINE.match(line):
            seen += 1
            if seen == 5:
                proc.send_signal(signal.SIGINT)
                break
        assert time.time() < deadline
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err      # as a shell reports SIGINT, so scripts can tell it from a finished run
    assert "Interrupted at iteration" in out and "tiny.backup" in out
    assert err.strip().splitlines()[-1] == f"pydarknet: interrupted (saved {os.path.join(backup, 'tiny.backup')})"
    assert os.path.exists(os.path.join(backup, "tiny.backup"))
