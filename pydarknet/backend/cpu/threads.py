"""The CPU's GEMMs on pydarknet's own threads: single-threaded BLAS calls, shared out piece by piece.

Why: OpenBLAS's threads wait for each other inside every call, so when another process holds a core each call
waits for a thread that is not running. Beside a spinning process and a training run, yolov3-tiny's forward went
from 63 to 500-670 ms with OpenBLAS on 2 threads (OpenCV DNN: 72 to 210-240 ms). Here BLAS runs on one thread, and
a GEMM is cut into pieces that the calling thread and the workers take one at a time: a thread that is not running
takes fewer pieces, and the caller never waits for a worker that has not started (it does the pieces itself).

The number of threads is Numba's (`numba.get_num_threads()`, which -threads and PYDARKNET_THREADS set), so that
kernels and GEMMs use the same cores.
"""
import itertools
import threading

import numba
import numpy as np

_state = threading.local()      # `inside`: this thread is running a piece, so the work it asks for runs in line
_lock = threading.Lock()
_workers = []                   # the worker threads; they wait on _wake between jobs
_wake = threading.Condition(_lock)
_jobs = []                      # the jobs posted, newest last; workers take pieces of the newest unfinished one
_blas_limited = False


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


def _worker():
    while True:
        with _wake:
            while not _jobs:
                _wake.wait()
            job = _jobs[-1]
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
    with _wake:
        while len(_workers) < n - 1:
            thread = threading.Thread(target=_worker, name=f"pydarknet-gemm-{len(_workers)}", daemon=True)
            thread.start()
            _workers.append(thread)
        _jobs.append(job)
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
