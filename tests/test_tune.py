"""`pydarknet tune` on the tests' tiny detector and shapes data: grid points run exactly once (one worker or two,
journal file or PostgreSQL), trials.csv and best.cfg agree with the study, a killed driver's trial is recovered,
pruned and NaN trials end as they should, and every bad space file is one line naming its file and line."""
import csv
import glob
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from pydarknet.cli import main
from pydarknet.data.shapes import generate
from tests.conftest import REPO, run_cli
from tests.test_train_cli import CFG

optuna = pytest.importorskip("optuna", reason='pydarknet tune needs Optuna (pip install "pydarknet[tune]")')

GRID = "[net]\nlearning_rate=choice(0.001,0.002)\n[yolo]\nignore_thresh=choice(0.5,0.7)\n"
POINTS = {(lr, t) for lr in (0.001, 0.002) for t in (0.5, 0.7)}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """The shapes dataset (24 images at 64x64) and the tiny cfg, in a folder of their own."""
    folder = tmp_path_factory.mktemp("tune")
    data = generate(folder / "shapes", n=24, size=64, seed=0).data
    (folder / "tiny.cfg").write_text(CFG.format(rate=.001))
    return folder, data, folder / "tiny.cfg"


def tune(folder, data, cfg, space, *flags, study="study", timeout=300):
    (folder / "grid.space").write_text(space)
    return run_cli("tune", data, cfg, "-space", folder / "grid.space", "-study", folder / study, "-threads", 1,
                   *flags, cwd=folder, timeout=timeout)


def start_tune(folder, data, cfg, space, *flags, quiet=False):
    """`pydarknet tune` on `space` (a grid) started in a process of its own, its output piped (or dropped)."""
    (folder / "grid.space").write_text(space)
    words = [sys.executable, "-m", "pydarknet", "tune", data, cfg, "-space", folder / "grid.space", "-study",
             folder / "study", "-sampler", "grid", *flags]
    output = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen(list(map(str, words)), cwd=folder, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=output, stderr=output, text=True)


def finish_together(workers, timeout=300):
    """Each process's (stdout, stderr) once all have ended (killed after `timeout`)."""
    try:
        return [w.communicate(timeout=timeout) for w in workers]
    finally:
        for w in workers:
            w.kill()


def trials_of(folder, study="study", name="tiny"):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(folder / study / "study.journal")))
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def point(trial):
    return trial.params["net.learning_rate"], trial.params["yolo.ignore_thresh"]


def test_a_grid_runs_each_point_once_and_its_outputs_agree_with_the_journal(shapes, tmp_path):
    folder, data, cfg = shapes
    result = tune(tmp_path, data, cfg, GRID, "-sampler", "grid", "-iterations", 4, "-map_every", 2, "-pruner", "none")
    assert result.returncode == 0, result.stderr
    trials = trials_of(tmp_path)
    assert len(trials) == 4 and {point(t) for t in trials} == POINTS
    assert all(t.state.name == "COMPLETE" for t in trials)
    rows = list(csv.DictReader(open(tmp_path / "study" / "trials.csv")))
    assert [int(r["number"]) for r in rows] == [t.number for t in trials]
    for row, trial in zip(rows, trials):
        assert (float(row["net.learning_rate"]), float(row["yolo.ignore_thresh"])) == point(trial)
        assert row["state"] == trial.state.name
        assert float(row["validation_loss"]) == trial.user_attrs["validation_loss"]
    # best.cfg: the best complete trial's values, every other line of the cfg as it was
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    best = sorted(complete, key=lambda t: (-t.value, t.user_attrs["validation_loss"]))[0]
    original = cfg.read_text().split("\n")
    written = (tmp_path / "study" / "best.cfg").read_text().split("\n")
    changed = [(a, b) for a, b in zip(original, written) if a != b]
    assert len(original) == len(written)
    assert all(a.split("=")[0] in ("learning_rate", "ignore_thresh") for a, _ in changed)
    assert f"learning_rate={best.params['net.learning_rate']:g}" in written
    assert f"ignore_thresh={best.params['yolo.ignore_thresh']:g}" in written
    for picture in ("history.png", "importances.png", "reports.png"):
        assert (tmp_path / "study" / picture).read_bytes()[:4] == b"\x89PNG"
    assert "the best trials" in result.stdout


@pytest.mark.parametrize("processes, jobs", [(2, 1), (1, 2)], ids=["two processes", "one process -jobs 2"])
def test_two_workers_on_one_folder_share_the_grid(shapes, tmp_path, processes, jobs):
    folder, data, cfg = shapes
    workers = [start_tune(tmp_path, data, cfg, GRID, "-iterations", 4, "-map_every", 2, "-threads", 2, "-jobs", jobs)
               for _ in range(processes)]
    outputs = finish_together(workers)
    assert [w.returncode for w in workers] == [0] * processes, [o[1] for o in outputs]
    trials = trials_of(tmp_path)
    assert len(trials) == 4 and sorted(map(point, trials)) == sorted(POINTS)
    ran = [sum(f"trial {t.number} started" in o[0] for o in outputs) for t in trials]
    assert ran == [1, 1, 1, 1]
    assert all("started" in o[0] for o in outputs), "each worker took trials"
    if jobs == 2:       # each trial on its share of the threads
        for t in trials:
            assert "1 threads" in (pathlib.Path(t.user_attrs["folder"]) / "train.log").read_text()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:         # a zombie is gone too
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(condition, seconds, what, driver=None):
    """condition()'s first true value within `seconds`; an AssertionError where it does not come, or where the
    `driver` process ends first."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if driver is not None and driver.poll() is not None:
            raise AssertionError(f"the driver ended ({driver.returncode}) before {what}")
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"waited {seconds} s for {what}")


def test_a_killed_driver_leaves_no_process_and_its_trial_is_run_again(shapes, tmp_path):
    folder, data, cfg = shapes
    space = "[net]\nlearning_rate=choice(0.001,0.002)\n"
    driver = start_tune(tmp_path, data, cfg, space, "-iterations", 10000, "-map_every", 5000, "-threads", 1,
                        quiet=True)
    try:
        def running_pid():
            if not (tmp_path / "study" / "trial-0000" / "metrics.jsonl").exists():
                return None
            running = [t for t in trials_of(tmp_path) if t.state.name == "RUNNING" and "pid" in t.user_attrs]
            return running[0].user_attrs["pid"] if running else None
        pid = wait_for(running_pid, 120, "trial 0's training to start", driver)
        assert alive(pid)
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        wait_for(lambda: not alive(pid), 10, f"trial process {pid} to die with its driver")
    finally:
        driver.kill()
        driver.wait()
    result = tune(tmp_path, data, cfg, space, "-sampler", "grid", "-iterations", 4, "-map_every", 2, "-trials", 3)
    assert result.returncode == 0, result.stderr
    assert "driver (pid" in result.stdout and "died" in result.stdout
    trials = trials_of(tmp_path)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"] or \
        {t.state.name for t in trials[1:]} <= {"COMPLETE", "PRUNED"}
    assert trials[0].state.name == "FAIL" and trials[0].user_attrs["reason"] == "driver died"
    assert len(trials) == 3
    assert sorted(t.params["net.learning_rate"] for t in trials[1:]) == [0.001, 0.002]
    assert trials[0].params in [t.params for t in trials[1:]]


def test_a_pruned_trial_is_ended_and_a_nan_trial_fails_with_its_reason(shapes, tmp_path):
    """Every trial trains from the same seed, so they differ in the learning rate alone: 1e5 diverges to NaN,
    1e-9 stays far above the median validation loss at the first report and is pruned there."""
    folder, data, cfg = shapes
    space = "[net]\nlearning_rate=choice(100000,0.001,0.0011,0.000000001)\n"
    result = tune(tmp_path, data, cfg, space, "-sampler", "grid", "-iterations", 200, "-map_every", 4)
    assert result.returncode == 0, result.stderr
    trials = trials_of(tmp_path)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE", "PRUNED"], result.stdout
    assert "the loss became nan" in trials[0].user_attrs["reason"]
    pruned = trials[3]
    assert pruned.user_attrs["iterations"] < 200
    assert not alive(pruned.user_attrs["pid"])
    assert "pruned at its report of iteration 4" in result.stdout


BAD_SPACES = [
    ("[net]\nlearning_rate=normal(0,1)\n", 2, "unknown distribution 'normal'"),
    ("[net]\nmomentum=uniform(0.9,0.8)\n", 2, "lower bound must be below the upper"),
    ("[net]\n\nlearning_rate=log(0,0.01)\n", 3, "bounds must be above 0"),
    ("[net]\nbatch=choice()\n", 2, "choice() is empty"),
    ("[net]\nmomentum=uniform(0.8,0.9)\n[region]\njitter=uniform(0,0.3)\n", 3, "has no [region] section"),
    ("[net]\nmomentum=uniform(0.8,0.9)\n[yolo]\nfilters=int(1,3)\n", 4, "does not read filters"),
    ("[net]\nmomentum=uniform(0.8,0.9)\n", 2, "-sampler grid needs a choice or a stepped range"),
]


@pytest.mark.parametrize("space, line, message", BAD_SPACES)
def test_a_bad_space_file_is_one_line_and_creates_nothing(shapes, tmp_path, capsys, space, line, message):
    folder, data, cfg = shapes
    path = tmp_path / "bad.space"
    path.write_text(space)
    flags = ["-sampler", "grid"] if "grid" in message else []
    code = main(["tune", str(data), str(cfg), "-space", str(path), "-study", str(tmp_path / "study"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"pydarknet: error: {path}:{line}:") and message in err[0]
    assert not (tmp_path / "study").exists()


def test_stepped_ranges_make_the_grid_and_the_default_space_holds_the_cfgs_values(shapes, tmp_path):
    from pydarknet.tune.space import cfg_values, default_space, parse_space, sections_read
    folder, data, cfg = shapes
    params = parse_space("[net]\nmomentum=uniform(0.8,0.9,0.05)\nbatch=int(2,8,3)\n", "s")
    assert [p.grid() for p in params] == [[0.8, 0.85, 0.9], [2, 5, 8]]
    sections = sections_read(cfg)
    defaults = parse_space(default_space(sections), "default")
    values = cfg_values(defaults, sections)
    assert [p.key for p in defaults] == ["learning_rate", "momentum", "decay", "hue", "saturation", "exposure"]
    assert values["net.learning_rate"] == .001 and values["net.momentum"] == .9
    assert all(p.holds(values[p.name]) for p in defaults if values[p.name] is not None)


def postgres_binaries():
    """The folder of Debian's PostgreSQL server programs (initdb, pg_ctl), else of those on PATH."""
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    folders += [os.path.dirname(shutil.which("pg_ctl"))] if shutil.which("pg_ctl") else []
    return next((f for f in folders if os.path.exists(os.path.join(f, "initdb"))), None)


def free_port():
    """A free TCP port on 127.0.0.1 (closed again before the server takes it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A throw-away PostgreSQL server on 127.0.0.1 in a temp folder (as the postgres user where the tests run as
    root, which initdb refuses; the folder then outside pytest's, which only root may enter), stopped and removed at
    the end; skips with the reason where it cannot be started."""
    pytest.importorskip("psycopg2", reason="the PostgreSQL test needs psycopg2 (the test extra's psycopg2-binary)")
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): .ci/run installs Debian's postgresql")
    folder = tempfile.mkdtemp(prefix="pydarknet-pg-")
    prefix = []
    if os.geteuid() == 0:
        import pwd
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            pytest.skip("running as root and there is no postgres user to run the server as")
        os.chown(folder, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port, data = free_port(), os.path.join(folder, "data")

    def run(*words):
        return subprocess.run(prefix + list(words), capture_output=True, text=True, timeout=120)
    try:
        made = run(os.path.join(binaries, "initdb"), "-D", data, "-U", "tune", "--auth=trust")
        if made.returncode:
            pytest.skip(f"initdb failed: {made.stderr.strip()[-300:]}")
        started = run(os.path.join(binaries, "pg_ctl"), "-D", data, "-l", os.path.join(folder, "server.log"),
                      "-w", "-t", "60", "-o", f"-h 127.0.0.1 -p {port} -k {folder}", "start")
        if started.returncode:
            pytest.skip(f"the PostgreSQL server did not start: {started.stderr.strip()[-300:]}")
        try:
            yield f"postgresql+psycopg2://tune@127.0.0.1:{port}/postgres"
        finally:
            run(os.path.join(binaries, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_a_grid_in_postgresql(shapes, tmp_path, postgres):
    folder, data, cfg = shapes
    workers = [start_tune(tmp_path, data, cfg, GRID, "-storage", postgres, "-iterations", 4, "-map_every", 2,
                          "-threads", 1) for _ in range(2)]
    outputs = finish_together(workers)
    assert [w.returncode for w in workers] == [0, 0], [o[1] for o in outputs]
    trials = optuna.load_study(study_name="tiny", storage=postgres).get_trials()
    assert len(trials) == 4 and sorted(map(point, trials)) == sorted(POINTS)
    assert not (tmp_path / "study" / "study.journal").exists()


def test_ctrl_c_ends_the_running_trials_and_the_study_resumes(shapes, tmp_path):
    folder, data, cfg = shapes
    space = "[net]\nlearning_rate=choice(0.001)\n"
    driver = start_tune(tmp_path, data, cfg, space, "-iterations", 10000, "-map_every", 5000, "-threads", 1)
    try:
        wait_for(lambda: (tmp_path / "study" / "trial-0000" / "metrics.jsonl").exists(), 120, "trial 0 to train",
                 driver)
        pid = [t for t in trials_of(tmp_path) if t.state.name == "RUNNING"][0].user_attrs["pid"]
        driver.send_signal(signal.SIGINT)
        out, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 130 and "goes on with the study" in err, err
    assert not alive(pid)
    trials = trials_of(tmp_path)
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"], out + err
    assert trials[0].user_attrs["reason"] == "interrupted (Ctrl-C)"
    result = tune(tmp_path, data, cfg, space, "-sampler", "grid", "-iterations", 4, "-map_every", 2)
    assert result.returncode == 0, result.stderr
    assert [t.state.name for t in trials_of(tmp_path)] == ["FAIL", "COMPLETE"]


def test_fitness_coco_is_the_last_reports_coco_map(shapes, tmp_path):
    folder, data, cfg = shapes
    result = tune(tmp_path, data, cfg, "[net]\nlearning_rate=choice(0.001)\n", "-sampler", "grid", "-iterations", 4,
                  "-map_every", 2, "-fitness", "coco")
    assert result.returncode == 0, result.stderr
    last = json.loads((tmp_path / "study" / "trial-0000" / "metrics.jsonl").read_text().splitlines()[-1])
    assert trials_of(tmp_path)[0].value == last["map_coco"] and "map" in last


def test_each_trial_is_a_run_of_the_studys_mlflow_experiment(shapes, tmp_path):
    pytest.importorskip("mlflow", reason='-tracker mlflow needs MLflow (pip install "pydarknet[mlflow]")')
    from mlflow.tracking import MlflowClient
    folder, data, cfg = shapes
    result = tune(tmp_path, data, cfg, "[net]\nlearning_rate=choice(0.001,0.002)\n", "-sampler", "grid",
                  "-iterations", 2, "-map_every", 2, "-tracker", "mlflow")
    assert result.returncode == 0, result.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'study' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["trial-0000", "trial-0001"]
    by_name = {run.info.run_name: run for run in runs}
    for trial in trials_of(tmp_path):
        run = by_name[f"trial-{trial.number:04d}"]
        assert run.info.status == "FINISHED"
        assert run.data.metrics["validation_loss"] == trial.user_attrs["validation_loss"]


def test_a_searched_batch_keeps_the_budget_in_images(shapes, tmp_path):
    """M = 4 iterations at the cfg's batch 4, reports every 2: a trial at batch 2 trains 8 iterations and reports
    every 4, at the same image counts (the pruner's steps 2 and 4 on both); its cfg's schedule is scaled to 8."""
    folder, data, cfg = shapes
    result = tune(tmp_path, data, cfg, "[net]\nbatch=choice(2,4)\n", "-sampler", "grid", "-iterations", 4,
                  "-map_every", 2, "-pruner", "none")
    assert result.returncode == 0, result.stderr
    trials = trials_of(tmp_path)
    assert [t.params["net.batch"] for t in trials] == [2, 4]
    assert [t.user_attrs["iterations"] for t in trials] == [8, 4]
    assert [sorted(t.intermediate_values) for t in trials] == [[2, 4], [2, 4]]
    assert [[row[0] for row in t.user_attrs["history"]] for t in trials] == [[4, 8], [2, 4]]
    written = (tmp_path / "study" / "trial-0000" / "tiny.cfg").read_text()
    assert "batch=2\n" in written and "max_batches=8\n" in written and "steps=6\n" in written
