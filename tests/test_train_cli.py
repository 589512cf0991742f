"""`detector train` end to end on a tiny network and dataset: the loss falls, backups appear on Darknet's
schedule, a run resumes where its weights left off (and so does its chart), Ctrl-C and NaN losses keep the work,
a seed repeats a run byte for byte."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from pydarknet import trainer
from pydarknet.cfg import read_data
from pydarknet.cli import main
from pydarknet.data.shapes import generate
from pydarknet.weights import read_header
from tests.conftest import REPO, run_cli

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


def write_cfg(folder, rate=.001, name="tiny"):
    path = folder / f"{name}.cfg"
    path.write_text(CFG.format(rate=rate))
    return path


def data_file(dataset, folder, **options):
    """The dataset's .data file with its backups in folder/backup and the given options changed (None: removed)."""
    lines = dict(line.split("=", 1) for line in open(dataset).read().splitlines() if "=" in line)
    lines.update(backup=str(folder / "backup"), **options)
    path = folder / "train.data"
    path.write_text("".join(f"{key}={value}\n" for key, value in lines.items() if value is not None))
    return path


def losses_printed(stdout):
    """The loss and average of each iteration line, as printed."""
    return [(int(m[1]), m[2], m[3]) for m in map(LINE.match, stdout.splitlines()) if m]


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
    saving = [line for line in out.splitlines() if line.startswith("Saving weights to ")]     # Darknet's line
    assert saving == [f"Saving weights to {os.path.join(backup, name)}" for name in ("tiny.backup", "tiny_100.weights")]
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


def test_a_diverging_run_stops_with_one_line_naming_the_cause(dataset, tmp_path, capsys, monkeypatch):
    """Issue 23: the weights overflow on the way (numpy's overflow warnings once reached the user); what the user
    gets is one line: where, that the steps diverged, and the two settings to change."""
    monkeypatch.chdir(tmp_path)
    cfg = write_cfg(tmp_path, rate=1e12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert main(["detector", "train", dataset, str(cfg), "-seed", "1", "-workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "overflow" not in err and "Warning" not in err, err
    last = err.strip().splitlines()[-1]
    assert re.search(r"tiny.cfg: the loss became (nan|inf) at iteration \d+.*: training diverged\. .*lower "
                     r"learning_rate \(now 1e\+12\) or raise burn_in \(now 10\)", last), last


def test_a_non_finite_first_loss_points_at_the_data(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write_cfg(tmp_path)
    monkeypatch.setattr(trainer, "train_network", lambda net, x, truth: float("nan"))
    assert main(["detector", "train", dataset, str(cfg), "-seed", "1", "-workers", "1"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(r"tiny.cfg: the loss became nan at iteration \d+, the first one: a NaN or infinity in the "
                     r"images, the labels or the weights \(pydarknet dataset check .*\)$", last), last


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


HOG = "import time\nend = time.time() + 120\nwhile time.time() < end: sum(range(10000))"


def test_a_seed_repeats_the_run_byte_for_byte(dataset, tmp_path):
    """Two runs with -seed, random=1, -map and 3 loader threads, the second beside two busy processes on this
    2-core machine: the same losses, the same mAP and the same weights bytes. (Within 200 iterations of
    max_batches Darknet's random=1 resizes to 608 every 10 iterations, so a short run trains at 608.)"""
    cfg = tmp_path / "seeded.cfg"
    cfg.write_text(CFG.format(rate=.0002).replace("random=0", "random=1").replace("batch=4", "batch=2")
                   .replace("filters=16", "filters=4").replace("filters=32", "filters=8"))
    runs = []
    for busy in (False, True):
        folder = tmp_path / ("busy" if busy else "quiet")
        folder.mkdir()
        data = data_file(dataset, folder)
        hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(2 if busy else 0)]
        try:
            result = run_cli("detector", "train", data, cfg, "-seed", "7", "-map", "-workers", "3",
                             "-max_batches", "12", cwd=folder)
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        assert result.returncode == 0, result.stderr
        assert "Resizing\n608" in result.stdout
        assert "Seed: 7 (-seed 7 repeats this run byte for byte on " in result.stdout
        scores = [line for line in result.stdout.splitlines() if "mean average precision" in line or "ap = " in line]
        runs.append((losses_printed(result.stdout), scores, (folder / "backup" / "seeded_final.weights").read_bytes()))
    quiet, busy = runs
    assert len(quiet[0]) == 12 and quiet[1]
    assert quiet[0] == busy[0] and quiet[1] == busy[1]
    assert quiet[2] == busy[2], "the same seed gave different weights"


def test_the_seed_line_names_the_cpu_and_numba_target(dataset, tmp_path, monkeypatch):
    """What decides a seeded run's bytes, named on the Seed line: the CPU model, the CPU Numba compiles for (LLVM's
    name for this one unless NUMBA_CPU_NAME says otherwise), OpenBLAS's kernel, threads, versions (issue 25, item 7)."""
    import numba
    from llvmlite import binding
    cpuinfo = "/proc/cpuinfo"
    if os.path.exists(cpuinfo):
        models = [line.split(":", 1)[1].strip() for line in open(cpuinfo) if line.startswith("model name")]
        assert not models or trainer.cpu_model() == " ".join(models[0].split())
    assert trainer.cpu_model()
    if not numba.config.CPU_NAME:
        assert trainer.numba_target() == binding.get_host_cpu_name()
    monkeypatch.setattr(numba.config, "CPU_NAME", "generic")
    assert trainer.numba_target() == "generic"
    monkeypatch.undo()
    result = run_cli("detector", "train", data_file(dataset, tmp_path), write_cfg(tmp_path), "-seed", "3",
                     "-max_batches", "1", "-workers", "1", "-chart", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    seed = [line for line in result.stdout.splitlines() if line.startswith("Seed: 3 ")]
    assert len(seed) == 1 and seed[0].startswith(f"Seed: 3 (-seed 3 repeats this run byte for byte on "
                                                 f"{trainer.cpu_model()}, Numba target {trainer.numba_target()}, ")
    assert re.search(r", (openblas|mkl|blis)[^,]*, \d+ threads, numpy [\d.]+, numba [\d.]+\)$", seed[0]) \
        or "this BLAS" in seed[0], seed[0]


def test_resume_keeps_the_chart_history(dataset, tmp_path):
    """chart.png covers the whole run: its sidecar chart.json keeps the points, and a resumed run reads those up
    to the iteration it resumes at (a later part that is being redone is dropped)."""
    data, cfg = data_file(dataset, tmp_path), write_cfg(tmp_path)
    backup = tmp_path / "backup"

    def train(*args):
        result = run_cli("detector", "train", data, cfg, *args, "-seed", "1", "-workers", "1", "-map", cwd=tmp_path,
                         umask=0o022)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "chart.png").stat().st_size > 1000
        return ([(i, float(loss), float(avg)) for i, loss, avg in losses_printed(result.stdout)],
                json.loads((tmp_path / "chart.json").read_text()))

    def assert_points(history, printed):      # the sidecar holds full floats, the lines print 6 decimals
        assert history["iterations"] == [i for i, _, _ in printed]
        np.testing.assert_allclose(np.c_[history["losses"], history["averages"]],
                                   [(loss, avg) for _, loss, avg in printed], atol=1e-6)

    first, history = train("-max_batches", "30")
    assert [i for i, _, _ in first] == list(range(1, 31))
    assert_points(history, first)
    assert [i for i, _ in history["maps"]] == [30]
    shutil.copy(backup / "tiny_final.weights", tmp_path / "at30.weights")
    second, history = train(backup / "tiny_final.weights", "-max_batches", "40")
    assert [i for i, _, _ in second] == list(range(31, 41))
    assert_points(history, first + second)
    assert [i for i, _ in history["maps"]] == [30, 40]
    third, history = train(tmp_path / "at30.weights", "-max_batches", "35")     # back to iteration 30
    assert_points(history, first + third)
    assert [i for i, _ in history["maps"]] == [30, 35]
    cleared, history = train(tmp_path / "at30.weights", "-clear", "-max_batches", "2")
    assert [i for i, _, _ in cleared] == [1, 2]
    assert_points(history, cleared)
    # backups honour the umask as a plain open() does (Darknet's fopen): 0644 under umask 022
    assert {oct(p.stat().st_mode & 0o777) for p in backup.iterdir()} == {"0o644"}


def test_map_without_valid_says_it_measures_the_training_list(dataset, tmp_path):
    cfg = write_cfg(tmp_path)
    train_list = open(dataset).read().split("train=")[1].splitlines()[0]
    for valid in (None, "given"):
        data = data_file(dataset, tmp_path, **({"valid": None} if valid is None else {}))
        result = run_cli("detector", "train", data, cfg, "-map", "-max_batches", "1", "-workers", "1", "-chart", "",
                         "-seed", "1", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        notes = [line for line in result.stderr.splitlines() if "valid=" in line]
        if valid is None:
            assert notes == [f"Warning: {data}: no valid= list, so -map measures mAP on the training list "
                             f"{train_list} (as Darknet does)"]
            count = len(open(train_list).read().split())
            assert f"{count}/{count} images" in result.stderr
            # an untrained network outputs inf boxes (Darknet's rolling variance starts at 0): one line for them all
            dropped = [line for line in result.stderr.splitlines() if "whose box or score is not" in line]
            assert len(dropped) <= 1 and all(re.search(r" in \d+ images ", line) for line in dropped), dropped
        else:
            assert notes == []


def test_an_empty_train_list_is_named(dataset, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    result = run_cli("detector", "train", data_file(dataset, tmp_path, train=empty), write_cfg(tmp_path),
                     cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"pydarknet: error: {empty}: no training images: the train " \
                                                       f"list is empty"


def test_map_schedule_is_alexeyabs():
    """-map every 4 epochs, at least 100 iterations apart, not before burn_in; counted from where a run starts."""
    from pydarknet.detector.train import next_map_at

    def schedule(images, batch, burn_in, max_batches, start=0):
        at, points = next_map_at(start, images, batch, burn_in), []
        for i in range(start + 1, max_batches + 1):
            if i >= at or i == max_batches:
                points.append(i)
                at = next_map_at(i, images, batch, burn_in)
        return points

    assert schedule(1600, 16, 100, 2000) == [400, 800, 1200, 1600, 2000]     # make demo's run
    assert schedule(40, 4, 0, 350) == [100, 200, 300, 350]                   # 4 epochs = 40 < the 100 minimum
    assert schedule(1600, 16, 1000, 2000) == [1000, 1400, 1800, 2000]
    assert schedule(1600, 16, 100, 2000, start=1500) == [1900, 2000]          # a resumed run


def test_train_checks_its_lists_first_and_says_where_the_problems_are(dataset, tmp_path):
    """detector train runs `dataset check -fast` on its lists, prints the count, writes the lists, and trains."""
    images = [line for line in open(read_data(dataset)["train"]).read().splitlines() if line]
    broken = tmp_path / "train.txt"
    broken.write_text("\n".join(images + [str(tmp_path / "gone.png")]) + "\n")
    result = run_cli("detector", "train", data_file(dataset, tmp_path, train=broken), write_cfg(tmp_path),
                     "-max_batches", "1", "-seed", "1", "-workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("dataset check -fast: "))
    assert "1 problem (image missing: 1)" in line and str(tmp_path / "bad.list") in line
    assert (tmp_path / "bad.list").read_text() == f"{tmp_path / 'gone.png'}\n"
    assert iterations(result.stdout)[0][0] == 1


def test_metrics_jsonl_records_each_iteration_and_resumes_with_the_weights(dataset, tmp_path, capsys, monkeypatch):
    """metrics.jsonl beside the chart: the printed iteration lines' numbers (and -map's mAP where it was measured);
    a run resumed from weights at iteration N keeps the lines up to N."""
    monkeypatch.chdir(tmp_path)
    cfg = write_cfg(tmp_path)
    data = data_file(dataset, tmp_path)
    backup = tmp_path / "backup"

    def train(*words):
        assert main(["detector", "train", str(data), str(cfg), *words, "-seed", "1", "-workers", "1"]) == 0
        return losses_printed(capsys.readouterr().out)

    def recorded():
        return [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]

    printed = train("-max_batches", "6", "-map")
    records = recorded()
    assert [(r["iteration"], f"{r['loss']:f}", f"{r['avg']:f}") for r in records] == printed
    assert [r["iteration"] for r in records if "map" in r] == [6] and 0 <= records[-1]["map"] <= 1
    shutil.copy(backup / "tiny_final.weights", tmp_path / "at6.weights")
    train(str(tmp_path / "at6.weights"), "-max_batches", "8")
    assert [r["iteration"] for r in recorded()] == list(range(1, 9))
    again = train(str(tmp_path / "at6.weights"), "-max_batches", "7")      # from iteration 6 again: 7 and 8 go
    assert [r["iteration"] for r in recorded()] == list(range(1, 8)) and recorded()[:6] == records
    assert recorded()[6]["loss"] == pytest.approx(float(again[0][1]), abs=1e-6)
    train("-max_batches", "2", "-chart", "")                                 # no chart: beside the backups
    assert [r["iteration"] for r in map(json.loads, open(backup / "metrics.jsonl"))] == [1, 2]


def test_validation_loss_is_an_inference_pass_with_the_heads_cost(dataset, tmp_path):
    """detector train's validation loss (at each -map point): the loss per image of an inference-mode forward on
    the valid images (jitter 0, neutral colour, no flip) at the cfg's size, whatever random=1 size the network has;
    weights, seen and rolling statistics bit-identical afterwards."""
    from pydarknet.data.loader import plain_samples
    from pydarknet.detector.train import validation_loss
    from pydarknet.network import load_network
    cfg = write_cfg(tmp_path)
    net = load_network(cfg, seed=3)
    net.seen = 1234
    valid = read_data(dataset).path_of("valid", "")
    paths = [line.strip() for line in open(valid) if line.strip()]
    before = [a.copy() for layer in net.layers for a in layer.weight_arrays()]
    net.resize(96, 96)                           # as random=1 leaves it
    got = validation_loss(net, paths, seed=5)
    assert (net.w, net.h) == (96, 96) and net.seen == 1234
    after = [a for layer in net.layers for a in layer.weight_arrays()]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    # the same by hand: the images one at a time at 64 x 64, predict (inference), then the [yolo] head's cost
    own = load_network(cfg, seed=3)
    total = 0.0
    for x, truth, _ in plain_samples(paths, (64, 64), "detection", 5, 90, 7, 5):
        own.predict(x[None])
        own.truth = truth[None]
        head = own.layers[-1]
        head.zero_delta(1)
        total += head.loss(own)
    assert got == pytest.approx(total / len(paths), rel=1e-5)
    first = [x for x, _, _ in plain_samples(paths[:1], (64, 64), "detection", 5, 90, 7, 5)][0]     # seeded: again
    assert np.array_equal(first, [x for x, _, _ in plain_samples(paths[:1], (64, 64), "detection", 5, 90, 7, 5)][0])


def test_map_points_record_the_validation_loss(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write_cfg(tmp_path)
    data = data_file(dataset, tmp_path)
    assert main(["detector", "train", str(data), str(cfg), "-max_batches", "3", "-map", "-seed", "1",
                 "-workers", "1"]) == 0
    out = capsys.readouterr().out
    printed = re.findall(r"^validation loss: ([\d.]+) on (\d+) images$", out, re.M)
    record = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")][-1]
    assert len(printed) == 1 and f"{record['validation_loss']:f}" == printed[0][0]
    assert json.load(open(tmp_path / "chart.json"))["validation"] == [[3, record["validation_loss"]]]


def test_map_every_k_iterations(dataset, tmp_path, capsys, monkeypatch):
    """-map_every K: mAP and the validation loss every K iterations and at the last (-map implied)."""
    monkeypatch.chdir(tmp_path)
    cfg = write_cfg(tmp_path)
    data = data_file(dataset, tmp_path)
    assert main(["detector", "train", str(data), str(cfg), "-max_batches", "5", "-map_every", "2", "-seed", "1",
                 "-workers", "1"]) == 0
    capsys.readouterr()
    measured = [r["iteration"] for r in map(json.loads, open(tmp_path / "metrics.jsonl")) if "validation_loss" in r]
    assert measured == [2, 4, 5]
    assert main(["detector", "train", str(data), str(cfg), "-map_every", "0"]) == 2
    assert "-map_every 0: needs a whole number of at least 1" in capsys.readouterr().err
