"""Training on several MPI ranks when something goes wrong, and the `-gpus 0,1` launcher (parallel/launch.py) over
CPU ranks: kill -9 of a rank ends the job at once, naming the rank, with no process left and the last backup
whole (a resume from it runs); Ctrl-C to the launcher saves one backup and exits 130; the ranks check their count;
without MPI, -sync and -gpus 0,1 name the extra to install.

Every job runs on this machine alone: the ranks talk over shared memory (Open MPI's btl self,sm) and to mpiexec
over 127.0.0.1 (PMIx)."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from pydarknet.cli import main
from pydarknet.data.shapes import generate
from pydarknet.network import load_network
from pydarknet.parallel import comm, launch
from tests.parallel.mpi import MPIEXEC, environment, missing, tiny_cfg

pytestmark = pytest.mark.mpi

LINE = re.compile(r"^(\d+): [-\d.naif]+, [-\d.naif]+ avg, ")
CFG = tiny_cfg(filters=(8, 16))
TRAIN = ["-threads", "1", "-workers", "1", "-chart", ""]


@pytest.fixture(scope="module")
def mpi_job():
    """The mpiexec beside this Python (skips where there is none, or no mpi4py)."""
    if missing():
        pytest.skip(missing())
    return MPIEXEC


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("shapes"), n=24, size=64, seed=0).data


def job_files(dataset, folder):
    """A .data file with its backups in folder/backup, and the cfg; (data, cfg, backup folder)."""
    lines = dict(line.split("=", 1) for line in open(dataset).read().splitlines() if "=" in line)
    lines["backup"] = str(folder / "backup")
    data = folder / "train.data"
    data.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
    cfg = folder / "tiny.cfg"
    cfg.write_text(CFG)
    return data, cfg, folder / "backup"


def start(words, cwd):
    return subprocess.Popen(words, cwd=cwd, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def read_until(proc, wanted, seconds):
    """Lines of the job's stdout until one matches `wanted` (a function), within `seconds`; that line."""
    deadline = time.time() + seconds
    for line in proc.stdout:
        if wanted(line):
            return line
        assert time.time() < deadline, f"no such line within {seconds} s"
    raise AssertionError(f"the job ended first: {proc.wait()} {proc.stderr.read()[-2000:]}")


def rank_of(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        entries = dict(entry.split(b"=", 1) for entry in f.read().split(b"\0") if b"=" in entry)
    return int(entries[b"OMPI_COMM_WORLD_RANK"])


def gone(pids, seconds=10):
    """Whether every process of `pids` has ended (reaped, not a zombie) within `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not any(os.path.exists(f"/proc/{pid}") for pid in pids):
            return True
        time.sleep(.1)
    return False


def end(proc, pids=()):
    """Whatever is left of a job, ended (a failing test leaves nothing behind)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_kill_9_of_a_rank_ends_the_job_and_the_backup_resumes(mpi_job, dataset, tmp_path):
    data, cfg, backup = job_files(dataset, tmp_path)
    proc = start([mpi_job, "-n", "2", "--bind-to", "none", sys.executable, "-m", "pydarknet", "detector", "train",
                  str(data), str(cfg), "-max_batches", "100000", *TRAIN], tmp_path)
    ranks = []
    try:
        read_until(proc, lambda line: line.startswith("Saving weights to ") and "tiny.backup" in line, 120)
        ranks = launch.rank_pids(proc.pid)
        assert sorted(map(rank_of, ranks)) == [0, 1]
        os.kill(next(pid for pid in ranks if rank_of(pid) == 1), signal.SIGKILL)
        killed = time.time()
        _, err = proc.communicate(timeout=60)
        assert time.time() - killed < 60
        assert proc.returncode != 0
        assert re.search(r"process rank 1 with PID \d+ .*exited on\s+signal 9", err.replace("\n", " ")), err
        assert gone(ranks), "a rank was left behind"
    finally:
        end(proc, ranks)
    net = load_network(str(cfg), str(backup / "tiny.backup"))
    done = net.current_batch()
    assert done >= 100
    resumed = subprocess.run([sys.executable, "-m", "pydarknet", "detector", "train", str(data), str(cfg),
                              str(backup / "tiny.backup"), "-max_batches", str(done + 2), *TRAIN], cwd=tmp_path,
                             env=environment(), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert [int(m[1]) for m in map(LINE.match, resumed.stdout.splitlines()) if m] == [done + 1, done + 2]


LAUNCH = "import sys; from pydarknet.parallel.launch import launch; sys.exit(launch(sys.argv[2:], int(sys.argv[1])))"


def test_ctrl_c_to_the_launcher_saves_one_backup_and_exits_130(mpi_job, dataset, tmp_path):
    data, cfg, backup = job_files(dataset, tmp_path)
    proc = start([sys.executable, "-c", LAUNCH, "2", "detector", "train", str(data), str(cfg), "-max_batches",
                  "100000", *TRAIN], tmp_path)
    ranks = []
    try:
        read_until(proc, lambda line: (m := LINE.match(line)) and int(m[1]) >= 10, 120)
        ranks = launch.rank_pids(proc.pid)
        assert len(ranks) == 2
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 130, err
        assert gone(ranks), "a rank was left behind"
    finally:
        end(proc, ranks)
    assert out.count("Interrupted at iteration") == 1      # rank 0 alone prints
    assert f"pydarknet: rank 0: interrupted (saved {backup / 'tiny.backup'})" in err
    assert sorted(os.listdir(backup)) == ["metrics.jsonl", "tiny.backup"]     # no chart: metrics beside the backup
    iteration = int(re.search(r"Interrupted at iteration (\d+)", out)[1])
    assert load_network(str(cfg), str(backup / "tiny.backup")).current_batch() == iteration


def test_the_ranks_check_that_there_is_one_a_gpu(mpi_job, tmp_path):
    """Ranks told of three GPUs (the launcher's PYDARKNET_RANK_GPUS) in a job of two: one line, the job ends."""
    (tmp_path / "tiny.cfg").write_text(CFG)
    words = [sys.executable, "-c", LAUNCH, "2", "randweights", "tiny.cfg", "out.weights"]
    env = dict(environment(), PYDARKNET_RANK_GPUS="0,1,2")
    done = subprocess.run(words, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "-gpus 0,1,2 starts 3 ranks, one a GPU, but this job has 2" in done.stderr
    assert not (tmp_path / "out.weights").exists()


def test_the_launcher_line(mpi_job, monkeypatch):
    line = launch.mpiexec_line(["detector", "train", "a.data", "b.cfg", "-gpus", "0,1"], 2)
    assert line[:5] == [mpi_job, "-n", "2", "--bind-to", "none"]
    assert line[5:] == [sys.executable, "-m", "pydarknet", "detector", "train", "a.data", "b.cfg", "-gpus", "0,1",
                        "-sync", "darknet"]
    assert launch.mpiexec_line(["classifier", "train", "-sync", "allreduce"], 3)[-2:] == ["-sync", "allreduce"]
    env = launch.environment(["0", "1"])
    assert env["PYDARKNET_RANK_GPUS"] == "0,1"
    assert ("OMPI_ALLOW_RUN_AS_ROOT" in env) == (os.geteuid() == 0)
    assert launch.starts_ranks(["detector", "train", "a", "b"], "0,1")
    assert not launch.starts_ranks(["detector", "train", "a", "b"], "0")
    assert not launch.starts_ranks(["detector", "test", "a", "b"], "0,1")
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1")
    assert launch.rank_device(["2", "3"]) == "3"
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "2")
    with pytest.raises(comm.ParallelError, match="more ranks than GPUs listed"):
        launch.rank_device(["2", "3"])


@pytest.fixture
def without_mpi4py(monkeypatch):
    """This process as where mpi4py is not installed."""
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "mpi4py" else
                        find_spec(name, *rest))


def test_without_mpi_sync_and_gpus_name_the_extra(dataset, tmp_path, capsys, monkeypatch, without_mpi4py):
    from pydarknet import backend
    data, cfg, _ = job_files(dataset, tmp_path)
    assert main(["detector", "train", str(data), str(cfg), "-sync", "darknet"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"pydarknet: error: -sync darknet needs MPI, and mpi4py is not installed: {comm.DIST_EXTRA}"]
    monkeypatch.setattr(backend, "build_wants_gpu", lambda: True)
    monkeypatch.delenv("OMPI_COMM_WORLD_SIZE", raising=False)
    assert main(["detector", "train", str(data), str(cfg), "-gpus", "0,1"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"pydarknet: error: -gpus with several GPUs needs MPI, and mpi4py is not installed: {comm.DIST_EXTRA}"]


def test_gpus_in_a_gpu_build_starts_its_ranks(mpi_job, dataset, tmp_path, capfd, monkeypatch):
    """The command line's way in: `detector train ... -gpus 0,1` in a GPU build starts two ranks with -sync darknet
    (here the ranks themselves are a CPU build, so they train on the CPU)."""
    from pydarknet import backend
    data, cfg, backup = job_files(dataset, tmp_path)
    monkeypatch.setattr(backend, "build_wants_gpu", lambda: True)
    for name, value in environment().items():
        if name.startswith(("OMPI_MCA", "PMIX_MCA", "PYTHONPATH")):
            monkeypatch.setenv(name, value)
    assert main(["detector", "train", str(data), str(cfg), "-gpus", "0,1", "-max_batches", "8", *TRAIN]) == 0
    out = capfd.readouterr().out
    assert out.count("Saved ") == 1 and (backup / "tiny_final.weights").exists()       # rank 0 alone prints
    assert "2 ranks (-sync darknet)" in out
    # -sync darknet: the 4th step's sync_nets makes the counter jump by 4 x (2 - 1)
    assert [int(m[1]) for m in map(LINE.match, out.splitlines()) if m] == [1, 2, 3, 8]
