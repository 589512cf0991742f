"""make gpu-check's parallel phase (bench/gpu_check.py): several ranks on GPUs, under two minutes.

1. One rank, NCCL: parallel/comm.py's NcclComm under `mpiexec -n 1` (allreduce, mean and broadcast run through
   NCCL's calls; with one rank they are the identity).
2. Two ranks training on the one GPU through host memory: `mpiexec -n 2 pydarknet detector train ... -gpus 0,0
   -sync darknet` with PYDARKNET_NCCL=0 (NCCL refuses two ranks on one device; MPI carries the buffers).
3. Two GPUs, NCCL: NcclComm's allreduce over two ranks, one a GPU; skipped, with the reason, on a one-GPU machine.

    python -m bench.gpu_parallel collectives      (one rank of 1 or 2: the phase runs it under mpiexec)
"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SECONDS = 110           # the whole phase; each step gets what is left
CFG = os.path.join(ROOT, "cfg", "yolov3-tiny-shapes.cfg")     # make demo's network, 8 iterations of it


def collectives():
    """One rank: NcclComm on GPU <local rank>, its allreduce (sum and mean) and broadcast checked; exit 0 where every
    rank's numbers are right."""
    from pydarknet import backend
    from pydarknet.parallel.comm import NcclComm, launched_local_rank, mpi
    MPI = mpi()
    device = launched_local_rank()
    xp = backend._gpu_module().xp
    comm = NcclComm(MPI, device)
    rank, size = comm.rank, comm.size
    with xp.cuda.Device(device):
        total = xp.full(1 << 20, rank + 1, xp.float32)
        comm.allreduce(total)
        mean = xp.full(1000, rank + 1, xp.float64)
        comm.allreduce(mean, mean=True)
        root = xp.full(1000, rank, xp.float32)
        comm.broadcast(root, root=0)
        want = size * (size + 1) / 2
        ok = bool((total == want).all()) and bool(xp.allclose(mean, want / size)) and bool((root == 0).all())
    answers = comm.gather_object(ok)
    if rank == 0:
        print(f"NCCL over {size} rank(s): allreduce, mean and broadcast {'right' if all(answers) else 'WRONG'}")
    comm.finalize()
    return 0 if rank or all(answers) else 1


def environment(**extra):
    from pydarknet.parallel.launch import environment as ranks_environment
    return ranks_environment(extra=dict(extra, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")))


def run(words, env, seconds):
    """A job's (exit status, its output's last lines: stdout's, and stderr's after a failure, seconds taken); a job
    past `seconds` is ended (status None)."""
    start = time.time()
    try:
        done = subprocess.run(words, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(seconds, 1))
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"")[-1500:]
        return None, text.decode(errors="replace") if isinstance(text, bytes) else text, time.time() - start
    text = done.stdout[-1500:] if done.returncode == 0 else done.stdout[-1500:] + done.stderr[-1500:]
    return done.returncode, text, time.time() - start


def row(name, status, text, seconds):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1][:150] if lines else "no output"
    verdict = "ok" if status == 0 else "timed out" if status is None else f"FAILED (exit {status})"
    return name, f"{verdict}, {seconds:.0f} s", last.replace("|", "/")


def host_training(mpiexec, folder, seconds, gpu="0"):
    """Two ranks of detector train on GPU `gpu` (both), the buffers over MPI: (status, output, seconds)."""
    from pydarknet.data.shapes import generate
    data = generate(os.path.join(folder, "shapes"), n=32, size=160, seed=0).data
    words = [mpiexec, "-n", "2", "--bind-to", "none", sys.executable, "-m", "pydarknet", "detector", "train", data,
             CFG, "-max_batches", "8", "-gpus", f"{gpu},{gpu}", "-sync", "darknet", "-workers", "1", "-chart", ""]
    status, text, took = run(words, environment(PYDARKNET_NCCL="0", PYDARKNET_GPU=gpu), seconds)
    final = os.path.join(folder, "shapes", "backup", "yolov3-tiny-shapes_final.weights")
    if status == 0 and not os.path.exists(final):
        return 1, f"no {final}\n" + text, took
    return status, text, took


def phase(rows, log):
    """The three checks above, as rows of gpu_check's table."""
    from pydarknet import backend
    from pydarknet.parallel.comm import ParallelError
    from pydarknet.parallel.launch import mpiexec as find_mpiexec
    try:
        mpiexec = find_mpiexec()
    except ParallelError as e:
        rows.append(("several ranks (MPI)", "skipped", str(e)))
        return
    end = time.time() + SECONDS
    rank = [sys.executable, "-m", "bench.gpu_parallel", "collectives"]
    rows.append(row("NCCL, 1 rank: allreduce, mean, broadcast (mpiexec -n 1)",
                    *run([mpiexec, "-n", "1", *rank], environment(), end - time.time())))
    log(rows[-1])
    with tempfile.TemporaryDirectory() as folder:
        rows.append(row("detector train, 2 ranks on GPU 0, host path (PYDARKNET_NCCL=0, -sync darknet)",
                        *host_training(mpiexec, folder, end - time.time())))
    log(rows[-1])
    count = backend._gpu_module().xp.cuda.runtime.getDeviceCount()
    if count < 2:
        rows.append(("NCCL, 2 ranks on 2 GPUs", "skipped", f"this machine has {count} GPU: NCCL wants one rank a GPU"))
    else:
        rows.append(row("NCCL, 2 ranks on 2 GPUs: allreduce, mean, broadcast",
                        *run([mpiexec, "-n", "2", "--bind-to", "none", *rank], environment(), end - time.time())))
    log(rows[-1])


if __name__ == "__main__":
    if sys.argv[1:] != ["collectives"]:
        print(__doc__.rsplit("\n\n", 1)[1].strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(collectives())
