"""Training on MPI ranks (issue 26): `-sync allreduce` on 2 ranks computes what one process computes for the cfg,
`-sync darknet` is pjreddie's -gpus 0,1, and the TCP transport over loopback gives the bytes shared memory gives.

Each run is a process of its own with one thread (tests/parallel/train_driver.py); mpiexec talks over loopback
only, every wait is bounded and no process outlives its test."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pydarknet.data.shapes import generate
from pydarknet.network import load_network
from pydarknet.weights import read_header
from tests.conftest import REPO
from tests.parallel.mpi import MPIEXEC, environment, missing, tiny_cfg

pytestmark = pytest.mark.mpi

DRIVER = REPO / "tests" / "parallel" / "train_driver.py"
# Open MPI's TCP transport, on the loopback interface only (it skips `lo` by default and would leave the machine)
TCP_LOOPBACK = ["--mca", "pml", "ob1", "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "lo"]
SHARED_MEMORY = ["--mca", "pml", "ob1", "--mca", "btl", "sm,self"]

if missing():
    pytest.skip(missing(), allow_module_level=True)


def run(command, timeout=240):
    """The command in its own process group, killed whole if it outlives `timeout`; its completed process."""
    proc = subprocess.Popen(command, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]
    return out


def train(folder, dataset, cfg, mode, iterations, ranks=1, transport=(), kind="detector", final="{}_final"):
    """The driver's run with backups in `folder`; the final weights' path."""
    folder.mkdir()
    data = folder / "train.data"
    lines = [line for line in open(dataset).read().splitlines() if not line.startswith("backup")]
    data.write_text("\n".join(lines + [f"backup={folder}"]) + "\n")
    command = [sys.executable, str(DRIVER), "train", kind, str(data), str(cfg), mode, str(iterations)]
    if ranks > 1:
        command = [MPIEXEC, "-n", str(ranks), "--bind-to", "none", *transport] + command
    run(command)
    return folder / f"{final.format(cfg.stem)}.weights"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("shapes"), n=24, size=64, seed=0).data


def assert_close(cfg, got, want, tolerance):
    """Every weight array within max|a-b| <= tolerance*max|b| + 1e-7, and the same `seen`; returns how far the
    weights moved from the seeded start, in those bounds (the comparison must be able to fail)."""
    a, b, start = load_network(cfg, got), load_network(cfg, want), load_network(cfg, seed=1)
    moved = 0.0
    for la, lb, l0 in zip(a.layers, b.layers, start.layers):
        for x, y, z in zip(la.weight_arrays(), lb.weight_arrays(), l0.weight_arrays()):
            bound = tolerance * np.abs(y).max() + 1e-7
            assert np.abs(x - y).max() <= bound, (la.index, la.type, np.abs(x - y).max(), bound)
            moved = max(moved, np.abs(y - z).max() / bound)
    assert read_header(open(got, "rb"), got)[1] == read_header(open(want, "rb"), want)[1]
    return moved


@pytest.mark.parametrize("bn, tolerance", [(False, 1e-5), (True, 1e-4)], ids=["no-bn", "bn"])
def test_allreduce_on_two_ranks_is_the_one_process_run(dataset, tmp_path, bn, tolerance):
    """Global batch 8 (4 a rank), random=1 (sizes drawn at iterations 1, 11 and 21), jitter, hue and flip on: 21
    iterations of a max_batches=1000 run. Synchronised batch-norm adds each rank's share of the statistics (and
    of their gradients) on to the previous rank's, as one process adds the whole batch up."""
    cfg = tmp_path / "net.cfg"
    # the batch-norm cfg at 16/32 filters: at 4/8 its float rounding (one process at -threads 1 against 2 alike)
    # grows past 1e-4 in 21 iterations at 448-544 pixels
    cfg.write_text(tiny_cfg(.0001 if bn else .00005, batch=8, max_batches=1000, burn_in=4, random=1, jitter=.2,
                            colour=True, batch_normalize=bn, filters=(16, 32) if bn else (4, 8)))
    one = train(tmp_path / "one", dataset, cfg, "allreduce", 21)
    two = train(tmp_path / "two", dataset, cfg, "allreduce", 21, ranks=2)
    assert read_header(open(one, "rb"), one)[1] == 21 * 8
    assert assert_close(cfg, two, one, tolerance) > 100


def test_classifier_train_on_two_ranks_is_the_one_process_run(tmp_path):
    """classifier train (batch 16, batch-norm, crops, angle and colour jitter): 6 iterations, 1e-5."""
    from pydarknet.data import shapes_cls
    from tests.test_classifier import write_cfg
    dataset = shapes_cls.generate(tmp_path / "set", n=50, size=40, seed=4)
    cfg = write_cfg(tmp_path)
    one = train(tmp_path / "one", dataset, cfg, "allreduce", 0, kind="classifier", final="{}")
    two = train(tmp_path / "two", dataset, cfg, "allreduce", 0, ranks=2, kind="classifier", final="{}")
    assert assert_close(cfg, two, one, 1e-5) > 100


def test_darknet_sync_is_pjreddies_multi_gpu_training(dataset, tmp_path):
    """2 ranks, batch-norm, 8 real steps (max_batches=16 on pjreddie's counter, which jumps by 4 at each sync):
    the in-process transcript of train_networks and sync_nets."""
    cfg = tmp_path / "net.cfg"
    cfg.write_text(tiny_cfg(.0005, max_batches=16, burn_in=4, jitter=.2, colour=True, filters=(4, 8)))
    two = train(tmp_path / "two", dataset, cfg, "darknet", 0, ranks=2)
    transcript = tmp_path / "transcript.weights"
    run([sys.executable, str(DRIVER), "transcript", str(dataset), str(cfg), str(transcript)])
    assert read_header(open(two, "rb"), two)[1] == 16 * 4
    assert assert_close(cfg, two, transcript, 1e-4) > 100


def test_tcp_over_loopback_gives_the_bytes_of_shared_memory(dataset, tmp_path):
    """What `mpiexec -H host1:4,host2:4` uses between machines, shown on this one over `lo` only."""
    cfg = tmp_path / "net.cfg"
    cfg.write_text(tiny_cfg(.00005, batch=8, max_batches=1000, burn_in=4, jitter=.2, colour=True, filters=(4, 8)))
    tcp = train(tmp_path / "tcp", dataset, cfg, "allreduce", 6, ranks=2, transport=TCP_LOOPBACK)
    shared = train(tmp_path / "shared", dataset, cfg, "allreduce", 6, ranks=2, transport=SHARED_MEMORY)
    assert tcp.read_bytes() == shared.read_bytes()
    shutil.rmtree(tmp_path / "tcp")


def test_make_demo_runs_on_two_ranks(tmp_path):
    """make demo's program on 2 ranks (what it does where MPI is installed), shortened: one progress line (rank
    0's), Darknet's lines from rank 0 alone in demo.log, the same losses as one process, and its four results."""
    logs, lines = {}, {}
    for ranks in (1, 2):
        out = tmp_path / f"ranks{ranks}"
        command = [sys.executable, str(DRIVER), "demo", str(out)]
        if ranks > 1:
            command = [MPIEXEC, "-n", "2", "--bind-to", "none", *SHARED_MEMORY] + command
        shown = run(command)
        assert shown.count("\nmAP ") == 1
        lines[ranks] = [line.split("] ")[1].split(":")[0] for line in shown.splitlines() if "make demo [" in line]
        logs[ranks] = (out / "demo.log").read_text()
        assert (out / "predictions.jpg").stat().st_size > 0 and (out / "chart.png").stat().st_size > 0
    # rank 0 alone shows the line (under mpiexec its stdout is a terminal, so the line is rewritten in place)
    steps = {r: [step for k, step in enumerate(lines[r]) if k == 0 or lines[r][k - 1] != step] for r in lines}
    assert steps[1] == steps[2] == ["dataset", "training", "detector map", "detector test"], lines
    assert "2 ranks (-sync allreduce)" in logs[2] and "ranks" not in logs[1].split("Seed:")[1].splitlines()[0]
    losses = {r: [float(line.split(",")[0].split()[1]) for line in logs[r].splitlines() if line[:2] in ("1:", "2:",
                                                                                                         "3:")]
              for r in logs}
    assert len(losses[2]) == 3 and logs[2].count("Saving weights") == logs[1].count("Saving weights")
    np.testing.assert_allclose(losses[2], losses[1], rtol=1e-4)
