"""backend/threads.py: GEMMs cut into pieces that the caller and pydarknet's workers share out."""
import threading

import numba
import numpy as np
import pytest

from pydarknet.backend import cpu, threads


def test_every_piece_runs_once_on_several_threads():
    seen, names = [], set()

    def piece(i):
        seen.append(i)
        names.add(threading.current_thread().name)

    threads.run(piece, 200)
    assert sorted(seen) == list(range(200))
    if numba.get_num_threads() > 1:
        assert threading.current_thread().name in names     # the caller works too


def test_a_failing_piece_raises_in_the_caller_and_work_in_a_piece_runs_in_line():
    def piece(i):
        if i == 7:
            raise ValueError("piece 7")
    with pytest.raises(ValueError, match="piece 7"):
        threads.run(piece, 20)
    inner = []
    threads.run(lambda i: threads.run(lambda j: inner.append((i, j)), 3), 4)
    assert sorted(inner) == [(i, j) for i in range(4) for j in range(3)]


@pytest.mark.parametrize("m, k, n", [(16, 27, 60000), (1024, 512, 49), (3, 5, 7), (257, 300, 257), (40, 9, 100003)])
def test_gemm_in_pieces_is_the_product(m, k, n):
    rng = np.random.default_rng(m + n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    exact = a.astype(np.float64) @ b
    scale = np.abs(exact).max()
    assert np.abs(cpu.gemm(a, b) - exact).max() < 1e-5 * scale
    out = np.full((n, m), np.nan, np.float32)           # transposed operands into a given buffer
    cpu.gemm(b.T, a.T, out=out)
    assert np.abs(out - exact.T).max() < 1e-5 * scale
    wide = np.full((m, n + 5), np.nan, np.float32)      # a strided view as out
    cpu.gemm(a, b, out=wide[:, 2:n + 2])
    assert np.abs(wide[:, 2:n + 2] - exact).max() < 1e-5 * scale
    assert np.isnan(wide[:, :2]).all() and np.isnan(wide[:, n + 2:]).all()


def test_blas_runs_on_one_thread_once_a_gemm_ran():
    from threadpoolctl import threadpool_info
    cpu.gemm(np.ones((64, 64), np.float32), np.ones((64, 64), np.float32))
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)
