"""`detector valid|recall|map` and `classifier valid` on 2 MPI ranks (mpiexec, shared memory on this machine):
the same result files, byte for byte, and the same figures as one process."""
import os
import re
import signal
import subprocess
import sys

import pytest

from pydarknet.cfg import read_cfg
from pydarknet.cli import main
from pydarknet.data import shapes, shapes_cls
from pydarknet.network import Network
from pydarknet.weights import sane_random_weights, save_weights
from tests.conftest import REPO, run_cli
from tests.parallel.mpi import MPIEXEC, environment, missing
from tests.test_classifier import write_cfg
from tests.test_cli import TINY_CFG

pytestmark = pytest.mark.mpi

NAMES = ("circle", "square", "triangle")
TIMEOUT = 120


@pytest.fixture(scope="module", autouse=True)
def needs_mpi():
    if missing():
        pytest.skip(missing())


def run_ranks(*args, cwd, ranks=2, python=("-m", "pydarknet")):
    """`mpiexec -n RANKS python -m pydarknet ARGS -threads 1` over shared memory: its exit code, stdout, stderr.
    The job is ended (its process group) if it outlives TIMEOUT."""
    env = environment()
    command = [MPIEXEC, "-n", str(ranks), "--bind-to", "none", sys.executable,
               *python, *map(str, args), *(["-threads", "1"] if python[-1] == "pydarknet" else [])]
    job = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        out, err = job.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGTERM)
        try:
            job.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.communicate()
        pytest.fail(f"{' '.join(command)} ran past {TIMEOUT} s")
    return job.returncode, out, err


def run_one(*args, cwd):
    result = run_cli(*args, "-threads", "1", cwd=cwd, timeout=TIMEOUT)
    return result.returncode, result.stdout, result.stderr


def both(*args, cwd):
    """The same command in one process and on 2 ranks; both must succeed."""
    one, two = run_one(*args, cwd=cwd), run_ranks(*args, cwd=cwd)
    assert one[0] == 0, one[2]
    assert two[0] == 0, two[2]
    return one, two


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    """13 generated 64x64 images in valid.txt (2 ranks: 6 and 7), voc.data and coco.data, a tiny yolo cfg with
    random weights."""
    root = tmp_path_factory.mktemp("pvalid")
    dataset = shapes.generate(root / "set", n=26, size=64, seed=0, valid_fraction=.5, classes=NAMES)
    text = open(dataset.data).read()
    (root / "voc.data").write_text(text)
    (root / "coco.data").write_text(text.replace("eval=voc", "eval=coco"))
    (root / "tiny.cfg").write_text(TINY_CFG)
    net = Network(read_cfg(root / "tiny.cfg"), "tiny.cfg")
    sane_random_weights(net, seed=3)
    save_weights(net, root / "tiny.weights")
    assert len(dataset.valid) == 13
    return root


def saved(err):
    """The files `detector valid` says it wrote."""
    return [line[len("Saved "):] for line in err.splitlines() if line.startswith("Saved ")]


@pytest.mark.parametrize("kind", ["voc", "coco"])
def test_valid_writes_the_same_files_on_two_ranks(detection, kind):
    args = ("detector", "valid", f"{kind}.data", "tiny.cfg", "tiny.weights", "-out")
    code, _, err = run_one(*args, f"one_{kind}_", cwd=detection)
    assert code == 0, err
    one = saved(err)
    code, _, err = run_ranks(*args, f"two_{kind}_", cwd=detection)
    assert code == 0, err
    two = saved(err)
    assert [path.replace("two_", "one_") for path in two] == one
    assert len(one) == (3 if kind == "voc" else 1)
    for mine, theirs in zip(one, two):
        single = (detection / mine).read_bytes()
        assert single.count(b"\n") > 10 * len(NAMES) // len(one)        # detections to compare
        assert (detection / theirs).read_bytes() == single, theirs
    assert err.count("layer     filters") == 1          # rank 1 prints no layer table
    assert "6/6 images" in err and "13/13" not in err   # rank 0's progress: its share, 6 of the 13 images


def test_map_prints_the_same_figures_on_two_ranks(detection):
    one, two = both("detector", "map", "voc.data", "tiny.cfg", "tiny.weights", cwd=detection)
    assert "mean average precision (mAP@0.50) = " in one[1]
    assert int(re.search(r"detections_count = (\d+)", one[1]).group(1)) > 0
    assert two[1] == one[1]


def test_recall_prints_the_same_lines_on_two_ranks(detection):
    one, two = both("detector", "recall", "voc.data", "tiny.cfg", "tiny.weights", cwd=detection)

    def lines(err):
        return [line for line in err.splitlines() if "RPs/Img" in line]

    assert len(lines(one[2])) == 13
    assert lines(two[2]) == lines(one[2])


def test_classifier_valid_prints_the_same_lines_on_two_ranks(tmp_path):
    data = shapes_cls.generate(tmp_path / "set", n=45, size=40, seed=4)
    cfg = write_cfg(tmp_path)
    assert main(["randweights", str(cfg), str(tmp_path / "w.weights"), "-seed", "3"]) == 0
    one, two = both("classifier", "valid", data, cfg, tmp_path / "w.weights", cwd=tmp_path)
    assert re.search(r"^8: top 1: \d\.\d{6}, top 2: \d\.\d{6}$", one[1], re.M)
    assert two[1] == one[1]


# training's -map: detector_map with a loaded network, its dict on every rank
LIVE_MAP = """
from pydarknet.cli import set_threads
from pydarknet.detector.train import evaluate_map
from pydarknet.network import load_network
from pydarknet.parallel.comm import world
set_threads(1)
comm = world()
net = load_network("tiny.cfg", "tiny.weights")
net.batch = 2
print(f"rank {comm.rank}: mAP {evaluate_map('voc.data', net, None)!r}", flush=True)
comm.finalize()
"""


def test_training_map_is_every_ranks(detection):
    single = subprocess.run([sys.executable, "-c", LIVE_MAP], cwd=detection, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert single.returncode == 0, single.stderr
    code, out, err = run_ranks(cwd=detection, python=("-c", LIVE_MAP))
    assert code == 0, err
    value = re.search(r"^rank 0: mAP (.+)$", single.stdout, re.M).group(1)
    assert sorted(re.findall(r"^rank \d: mAP .+$", out, re.M)) == [f"rank 0: mAP {value}", f"rank 1: mAP {value}"]
    # ranks write to a pseudo-terminal: a library's reset-colour escape at the interpreter's exit is left out
    report = [line for line in out.splitlines() if not line.startswith(("rank ", "\x1b["))]
    assert report == [line for line in single.stdout.splitlines() if not line.startswith("rank ")]
    assert "mean average precision (mAP@0.50) = " in out     # printed once, by rank 0
