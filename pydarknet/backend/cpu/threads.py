"""The CPU's GEMMs on pydarknet's own threads: single-threaded BLAS calls, shared out piece by piece.

Why: OpenBLAS's threads wait for each other inside every call, so when another process holds a core each call
waits for a thread that is not running. Beside a spinning process and a training run, yolov3-tiny's forward went
from 63 to 500-670 ms with OpenBLAS on 2 threads (OpenCV DNN: 72 to 210-240 ms). Here BLAS runs on one thread, and
a GEMM is cut into pieces that the calling thread and the workers take one at a time: a thread that is not running
takes fewer pieces, and the caller never waits for a worker that has not started (it does the pieces itself).

The number of threads is Numba's (`numba.get_num_threads()`, which -threads and PYDARKNET_THREADS set), so that
kernels and GEMMs use the same cores.

Where numpy's BLAS exports cblas_sgemm, an inference pass's GEMMs run on Numba's threads instead (sgemm.py), and
these pieces serve training's and the rest. During an inference pass (spinning(), which inference_pass and so
Network.predict enter) a worker that runs out of pieces keeps looking for the next job for up to PYDARKNET_SPIN_US
(1 ms) before it sleeps, with the GIL released and yielding its core to any other thread that wants it. Training does
not spin, nor do ranks that share the cores (set_spin(0)). inference_pass also watches for cores shared with a busy
process (see SHARED_SHARE), and holds Numba's workers to CPUs other than the caller's (place_workers).
"""
import contextlib
import itertools
import os
import threading
import time

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ... import settings
from ...jit import kernel, piece_kernel

_state = threading.local()      # `inside`: this thread is running a piece, so the work it asks for runs in line
_lock = threading.Lock()
_workers = []                   # the worker threads; they wait on _wake between jobs
_wake = threading.Condition(_lock)
_jobs = []                      # the jobs posted, newest last; workers take pieces of the newest unfinished one
_blas_limited = False
_posted = np.zeros(1, np.int64)     # jobs posted so far: what a spinning worker watches
_spin = {"us": None, "cycles": None}    # the spin budget (None: PYDARKNET_SPIN_US, read when the first worker starts)
_spinning = [0]                     # inference passes under way (spinning()): the workers spin only then


class _Job:
    def __init__(self, piece, count):
        self.piece, self.count = piece, count
        self.next = itertools.count()       # next(...) is atomic under the GIL: each piece is taken once
        self.finished = 0
        self.error = None
        self.done = threading.Condition(threading.Lock())

    def work(self):
        """Take pieces until none is left (work a piece asks for runs in line: no thread waits on another)."""
        outer, _state.inside = getattr(_state, "inside", False), True
        try:
            while True:
                i = next(self.next)
                if i >= self.count:
                    return
                try:
                    self.piece(i)
                except BaseException as e:  # noqa: BLE001  (re-raised in the caller's thread)
                    self.error = self.error or e
                with self.done:
                    self.finished += 1
                    if self.finished == self.count:
                        self.done.notify_all()
        finally:
            _state.inside = outer


@intrinsic
def _load_acquire(typingctx, array):
    """array[0] (int64), read from memory every time (another thread writes it)."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.load_atomic(data, "acquire", 8)
    return types.int64(array), codegen


@intrinsic
def _cycles(typingctx):
    """The processor's time-stamp counter."""
    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                                  "llvm.readcyclecounter")
        return builder.call(function, [])
    return types.int64(), codegen


@intrinsic
def _yield_core(typingctx):
    """sched_yield(): another runnable thread on this core runs now."""
    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                                  "sched_yield")
        builder.call(function, [])
        return context.get_dummy_value()
    return types.none(), codegen


@piece_kernel
def _watch(posted, seen, cycles):
    """Until posted[0] differs from seen or `cycles` have passed; True if it changed."""
    start = _cycles()
    while _load_acquire(posted) == seen:
        if _cycles() - start > cycles:
            return False
        _yield_core()
    return True


@piece_kernel
def _cycle_count():
    return _cycles()


def _cycles_per_us():
    """The time-stamp counter's rate, measured over a millisecond."""
    _watch(_posted, _posted[0], 0)     # both compiled or loaded before the timing
    c0 = _cycle_count()
    t0, c0 = time.perf_counter(), _cycle_count()
    while time.perf_counter() - t0 < 1e-3:
        pass
    return (_cycle_count() - c0) / ((time.perf_counter() - t0) * 1e6)


def set_spin(us):
    """Microseconds an idle worker looks for work before sleeping (0: it sleeps at once; None: the setting)."""
    _spin["us"] = us
    _spin["cycles"] = None


@contextlib.contextmanager
def spinning():
    """Inside, idle workers spin before sleeping (Network.predict: a pass's jobs come every few hundred
    microseconds); outside, in training, they sleep at once: there Numba's threads run between the jobs, and a
    spinning worker would take their core."""
    with _lock:
        _spinning[0] += 1
    try:
        yield
    finally:
        with _lock:
            _spinning[0] -= 1


# Cores shared with a busy process. Numba's threads spin between parallel regions (GOMP_SPINCOUNT), which pays on
# free cores; on a core another process keeps busy the spin spends the thread's share, and each region waits for
# the thread that is not running: yolov3-tiny's pass took 90-110 ms beside a spinning process, against 60 ms on
# one thread. A pass whose threads got less than SHARED_SHARE of their CPU time (quiet: 0.85-1.0, one core busy:
# 0.5) tells; after SHARED_PASSES such passes in a row, inference runs on one thread, and a pass tries all of them
# again (a probe) once PROBE_EVERY passes or PROBE_AFTER_S seconds have gone by since the last, to see whether the
# cores are free: the host of a virtual machine takes a core away for a while too.
SHARED_SHARE = 0.65
SHARED_PASSES = 2
PROBE_EVERY = 8
PROBE_AFTER_S = 1.0
MEASURED_S = 2e-3       # shorter passes say nothing
_sharing = {"low": 0, "since": 0, "probed": 0.0}     # shared passes in a row; one-thread passes since the last
                                                    # probe, and when that was


@contextlib.contextmanager
def inference_pass():
    """Network.predict's pass: workers spin (spinning()), on one thread while the cores are found shared."""
    n = numba.get_num_threads() if numba_threads_spin() else 1     # sleeping threads leave a shared core soon
    wall, cpu = _clocks()
    shared = _sharing["low"] >= SHARED_PASSES
    probe = _sharing["since"] + 1 >= PROBE_EVERY or wall - _sharing["probed"] >= PROBE_AFTER_S
    one = n > 1 and shared and not probe
    if one:
        numba.set_num_threads(1)
        _sharing["since"] += 1
    elif n > 1:
        place_workers()
    try:
        with spinning():
            yield
    finally:
        if one:
            numba.set_num_threads(n)
        elif n > 1:
            wall_end, cpu_end = _clocks()
            _sharing["since"], _sharing["probed"] = 0, wall_end
            _note_share((cpu_end - cpu) / n, wall_end - wall)


# Where Numba's workers run. After an idle spell a sleeping worker is woken by the thread that starts the pass, and
# Linux may wake it on that thread's own CPU: the two then share one core until the load balancer parts them, 20-25
# ms later. yolov3-tiny after a 0.1 s pause beside other processes' passes: 41-50 ms against 28-31 back to back;
# with each worker held to a CPU other than the one the pass starts on, 29-34 against 28-32 (its first 5 layers
# had taken 2-3.5 ms more each; on one thread the pause cost nothing). The calling thread is not bound (threads it
# starts later inherit its mask), and nothing is bound on one thread, or where the process may use one CPU.
_SYS_GETTID = {"x86_64": 186, "aarch64": 178}
_placed = {"tids": None, "cpus": None, "libc": None}    # Numba's threads' ids (thread i at i), where the workers
                                                        # run, and the C library (sched_getcpu)


@intrinsic
def _syscall(typingctx, number):
    """The C library's syscall(number) with no arguments."""
    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(64), [ir.IntType(64)], var_arg=True), "syscall")
        return builder.call(function, [args[0]])
    return types.int64(types.int64), codegen


@kernel(parallel=True)
def _thread_ids(out, gettid):
    """out[i] = Numba's thread i's kernel thread id, for each thread that took a part."""
    for _ in numba.prange(out.size):
        out[numba.get_thread_id()] = _syscall(gettid)


def _worker_tids(n):
    """Numba's n threads' ids, the calling thread's at 0 (None where unknown): a kernel run until each thread
    took a part of it."""
    gettid = _SYS_GETTID.get(os.uname().machine)
    if gettid is None:
        return None
    if _placed["tids"] is None or len(_placed["tids"]) != n:
        out = np.zeros(n, np.int64)
        for _ in range(50):
            _thread_ids(out, gettid)
            if out.all():
                break
        _placed["tids"] = [int(t) for t in out] if out.all() else []
    return _placed["tids"] or None


def place_workers():
    """Hold each of Numba's workers to a CPU other than the one this thread runs on now (kept until a later pass
    starts on another CPU)."""
    allowed = sorted(os.sched_getaffinity(0))
    n = numba.get_num_threads()
    tids = _worker_tids(n) if len(allowed) > 1 else None
    if not tids:
        return
    if _placed["libc"] is None:
        import ctypes
        _placed["libc"] = ctypes.CDLL(None)
    here = _placed["libc"].sched_getcpu()
    others = [cpu for cpu in allowed if cpu != here] or allowed
    cpus = [others[i % len(others)] for i in range(n - 1)]
    if cpus == _placed["cpus"]:
        return
    try:
        for tid, cpu in zip(tids[1:], cpus):
            os.sched_setaffinity(tid, {cpu})
        _placed["cpus"] = cpus
    except OSError:             # a worker gone (Numba made a new pool): found again next pass
        _placed["tids"] = _placed["cpus"] = None


def _clocks():
    """(wall seconds, this process's CPU seconds: all its threads')."""
    return time.perf_counter(), time.process_time()


def numba_threads_spin():
    """Whether Numba's threads spin between regions (pydarknet's GOMP_SPINCOUNT, unless the environment said
    OMP_WAIT_POLICY=PASSIVE or a spin count of 0)."""
    policy = os.environ.get("OMP_WAIT_POLICY", "").strip().upper()
    return policy != "PASSIVE" and os.environ.get("GOMP_SPINCOUNT", "").strip() != "0"


def _note_share(cpu, wall):
    """After a pass on all threads that took `wall` seconds, each thread `cpu` seconds of CPU time on average."""
    if wall < MEASURED_S:
        return
    _sharing["low"] = _sharing["low"] + 1 if cpu < SHARED_SHARE * wall else 0


def _spin_budget():
    """The cycles an idle worker spins now: the setting's inside an inference pass, none outside."""
    return _spin_cycles() if _spinning[0] else 0


def _spin_cycles():
    if _spin["cycles"] is None:
        us = settings.spin_us() if _spin["us"] is None else _spin["us"]
        _spin["cycles"] = int(us * _cycles_per_us()) if us > 0 else 0
    return _spin["cycles"]


def _next_job():
    """The newest job: looked for a while (spinning, the GIL released), then waited for."""
    with _wake:
        if _jobs:
            return _jobs[-1]
        seen = int(_posted[0])
    cycles = _spin_budget()
    if cycles:
        _watch(_posted, seen, cycles)
    with _wake:
        while not _jobs:
            _wake.wait()
        return _jobs[-1]


def _worker():
    while True:
        job = _next_job()
        job.work()
        with _wake:
            if job in _jobs:
                _jobs.remove(job)


def limit_blas(again=False):
    """Every loaded BLAS on one thread (the pieces are the parallelism): once per process, or `again` for the
    libraries loaded since."""
    global _blas_limited
    if _blas_limited and not again:
        return
    from threadpoolctl import ThreadpoolController
    ThreadpoolController().select(user_api="blas").limit(limits=1)
    _blas_limited = True


def blas_limited_by_environment():
    """The process set OPENBLAS_NUM_THREADS=1 (and the like) before numpy loaded: limit_blas has nothing to do."""
    global _blas_limited
    _blas_limited = True


def threads():
    return numba.get_num_threads()


def buffer(n, name="columns"):
    """n floats of the calling thread's buffer `name`, kept for its next call (a piece's scratch space)."""
    buffers = _state.__dict__.setdefault("buffers", {})
    kept = buffers.get(name)
    if kept is None or kept.size < n:
        kept = buffers[name] = np.empty(n, np.float32)
    return kept[:n]


def inside():
    """Whether this thread is running a piece (work it asks for then runs in line)."""
    return getattr(_state, "inside", False)


def run(piece, count):
    """piece(i) for i in range(count), on this thread and the workers; returns when every piece has finished."""
    limit_blas()
    n = min(threads(), count)
    if n <= 1 or inside():
        for i in range(count):
            piece(i)
        return
    job = _Job(piece, count)
    if not _workers:
        _spin_cycles()      # measured before the first worker exists
    with _wake:
        while len(_workers) < n - 1:
            thread = threading.Thread(target=_worker, name=f"pydarknet-gemm-{len(_workers)}", daemon=True)
            thread.start()
            _workers.append(thread)
        _jobs.append(job)
        _posted[0] += 1
        _wake.notify(n - 1)
    job.work()
    with job.done:
        while job.finished < job.count:
            job.done.wait()
    with _wake:
        if job in _jobs:
            _jobs.remove(job)
    if job.error is not None:
        raise job.error
