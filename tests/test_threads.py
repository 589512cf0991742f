"""backend/cpu/threads.py: GEMMs cut into pieces that the caller and pydarknet's workers share out."""
import os
import subprocess
import sys
import threading

import numba
import numpy as np
import pytest

from pydarknet.backend import cpu
from pydarknet.backend.cpu import convolution, threads


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


@pytest.mark.parametrize("m, k, n", [(16, 27, 60000), (1024, 512, 49), (3, 5, 7), (257, 300, 257), (40, 9, 100003),
                                     (4, 300000, 8), (2, 200000, 33), (30, 100000, 1)])
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


def test_numpys_blas_runs_on_one_thread_once_a_gemm_ran():
    from threadpoolctl import threadpool_info
    cpu.gemm(np.ones((64, 64), np.float32), np.ones((64, 64), np.float32))
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas" and "numpy" in pool["filepath"]]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)      # the BLAS numpy's matmul calls


@pytest.mark.parametrize("shape, filters, size, stride, pad, groups", [
    ((3, 37, 29), 5, 3, 1, 1, 1), ((4, 30, 41), 6, 3, 2, 1, 2), ((2, 23, 20), 3, 5, 3, 2, 1),
    ((3, 17, 9), 4, 3, 1, 0, 1),
    ((2, 9, 40), 2, 4, 2, 3, 1)])
@pytest.mark.parametrize("pieces", ["rows", "images"])
@pytest.mark.parametrize("batch", [1, 2])
def test_convolution_in_pieces(monkeypatch, shape, filters, size, stride, pad, groups, pieces, batch):
    """Images and groups are pieces; large column matrices are made piece by piece over output rows too (forced
    on here for small awkward shapes, a row a piece; one image: on Numba's threads, sgemm.py). im2col throughout:
    the direct 3x3 path is turned off."""
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    import reference
    monkeypatch.setenv("PYDARKNET_DIRECT_MAX_CHANNELS", "0")
    if pieces == "rows":
        monkeypatch.setattr(convolution, "_LARGE_COLUMNS", 1)
        monkeypatch.setattr(convolution, "_PIECE_COLUMNS", 1)
        monkeypatch.setattr(convolution, "_PIECE_MIN_WIDTH", 1)        # one output row a piece
    rng = np.random.default_rng(5)
    x = rng.standard_normal((batch,) + shape).astype(np.float32)
    w = rng.standard_normal((filters, shape[0] // groups * size * size)).astype(np.float32)
    out_h = (shape[1] + 2 * pad - size) // stride + 1
    out_w = (shape[2] + 2 * pad - size) // stride + 1
    y = np.full((batch, filters, out_h, out_w), np.nan, np.float32)
    cpu.convolution_forward(x, w, size, stride, pad, groups, y)
    exact = reference.convolution(x, w, size, stride, pad, groups)
    np.testing.assert_allclose(y, exact, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_im2col_copies_every_window(size, stride):
    """im2col (whole, and a band of output rows) against a loop over every window, value for value: the copies
    of each row's inside part and the zeros around them, for pads up to beyond the kernel and tiny images."""
    im2col_module = sys.modules["pydarknet.backend.cpu.im2col"]
    rng = np.random.default_rng(size * 10 + stride)
    for pad, height, width in [(0, 7, 9), (1, 5, 8), (2, 1, 4), (3, 4, 1), (1, 9, 20)]:
        out_h, out_w = (height + 2 * pad - size) // stride + 1, (width + 2 * pad - size) // stride + 1
        if out_h <= 0 or out_w <= 0:
            continue
        x = rng.standard_normal((2, height, width)).astype(np.float32)
        expected = np.zeros((2, size, size, out_h, out_w), np.float32)
        for c, ky, kx, i, j in np.ndindex(expected.shape):
            y, xx = ky + i * stride - pad, kx + j * stride - pad
            if 0 <= y < height and 0 <= xx < width:
                expected[c, ky, kx, i, j] = x[c, y, xx]
        expected = expected.reshape(2 * size * size, out_h, out_w)
        whole = cpu.im2col(x, size, stride, pad, out_h, out_w)
        np.testing.assert_array_equal(whole, expected.reshape(-1, out_h * out_w))
        first = out_h // 2
        band = np.full(expected[:, first:].size, np.nan, np.float32)
        im2col_module.im2col_rows(x, size, stride, pad, out_w, first, out_h, band)
        np.testing.assert_array_equal(band.reshape(-1, out_h - first, out_w), expected[:, first:])


def convolution_gradients(x, weights, delta, size, stride, pad, groups):
    """In float64: the weight gradient sum over images of delta x columns^T, and the input gradient, of the
    convolution in reference.convolution (the same patches, differentiated)."""
    batch, c, h, w = x.shape
    filters, (_, _, out_h, out_w) = weights.shape[0], delta.shape
    cg, ng = c // groups, filters // groups
    kernel = np.asarray(weights, np.float64).reshape(filters, cg, size, size)
    padded = np.zeros((batch, c, h + 2 * pad + size, w + 2 * pad + size))
    padded[:, :, pad:pad + h, pad:pad + w] = x
    d = np.asarray(delta, np.float64)
    dw, dpadded = np.zeros_like(kernel), np.zeros_like(padded)
    for g in range(groups):
        fs, cs = slice(g * ng, (g + 1) * ng), slice(g * cg, (g + 1) * cg)
        for ky in range(size):
            for kx in range(size):
                rows, cols = slice(ky, ky + stride * out_h, stride), slice(kx, kx + stride * out_w, stride)
                window = (slice(None), cs, rows, cols)
                dw[fs, :, ky, kx] = np.einsum("bfij,bcij->fc", d[:, fs], padded[window])
                dpadded[window] += np.einsum("fc,bfij->bcij", kernel[fs, :, ky, kx], d[:, fs])
    return dw.reshape(weights.shape), dpadded[:, :, pad:pad + h, pad:pad + w]


@pytest.mark.parametrize("batch, shape, filters, size, stride, pad, groups, way", [
    (5, (3, 37, 29), 5, 3, 1, 1, 1, "rows"), (5, (3, 37, 29), 5, 3, 1, 1, 1, "images"),
    (3, (4, 30, 41), 6, 3, 2, 1, 2, "rows"), (1, (2, 23, 20), 3, 5, 3, 2, 1, "images"),
    (6, (3, 17, 9), 4, 3, 1, 0, 1, "rows"), (4, (4, 9, 11), 6, 1, 1, 0, 2, "images"),
    (5, (3, 12, 13), 4, 3, 1, 1, 1, "winograd"), (2, (5, 7, 6), 8, 3, 1, 1, 1, "winograd"),
    (3, (4, 11, 8), 5, 3, 1, 0, 1, "winograd"), (2, (6, 9, 9), 3, 3, 1, 2, 1, "winograd"),
    (5, (3, 37, 29), 5, 3, 1, 1, 1, "direct"), (1, (2, 23, 70), 7, 3, 1, 1, 1, "direct"),
    (3, (16, 1, 1), 4, 3, 1, 1, 1, "direct")])
def test_convolution_backward_in_pieces(monkeypatch, batch, shape, filters, size, stride, pad, groups, way):
    """The images are the pieces, each of a few slots summing its images' weight gradient (large column matrices
    made a few output rows at a time, forced here; or by Winograd, the weight gradient, and the input gradient where
    pad is 1; or by the direct 3x3 loops): the sums, added onto what weight_updates and dx held, are the float64
    gradients'."""
    if way != "direct":
        monkeypatch.setenv("PYDARKNET_DIRECT_MAX_CHANNELS", "0")
    if way == "rows":
        monkeypatch.setattr(convolution, "_LARGE_COLUMNS", 1)
        monkeypatch.setattr(convolution, "_PIECE_COLUMNS", 1)
        monkeypatch.setattr(convolution, "_PIECE_MIN_WIDTH", 1)
    if way == "winograd":
        monkeypatch.setenv("PYDARKNET_WINOGRAD_MIN_CHANNELS", "1")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((batch,) + shape).astype(np.float32)
    w = rng.standard_normal((filters, shape[0] // groups * size * size)).astype(np.float32)
    out_h = (shape[1] + 2 * pad - size) // stride + 1
    out_w = (shape[2] + 2 * pad - size) // stride + 1
    delta = rng.standard_normal((batch, filters, out_h, out_w)).astype(np.float32)
    updates, dx = rng.standard_normal(w.shape).astype(np.float32), rng.standard_normal(x.shape).astype(np.float32)
    before_updates, before_dx = updates.copy(), dx.copy()
    derived = {}
    cpu.convolution_backward(x, delta, w, size, stride, pad, groups, updates, dx, None, derived)
    assert ("winograd" in derived) == (way == "winograd" and pad == 1)
    dw, dx_exact = convolution_gradients(x, w, delta, size, stride, pad, groups)
    np.testing.assert_allclose(updates, before_updates + dw, rtol=1e-4, atol=1e-4)
    one_by_one = size == 1 and stride == 1 and pad == 0     # Darknet's beta-0 GEMM writes dx over
    np.testing.assert_allclose(dx, dx_exact if one_by_one else before_dx + dx_exact, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [1, 65535, 65537, 3 << 16])
def test_zero_clears_every_element_in_pieces(size):
    x = np.arange(1, size + 1, dtype=np.float32)
    assert cpu.zero(x) is x and not x.any()
    wide = np.ones((3, size + 2), np.float32)
    cpu.zero(wide[:, 1:-1])                     # a strided view: only its elements
    assert not wide[:, 1:-1].any() and (wide[:, [0, -1]] == 1).all()


def test_an_idle_worker_watches_for_a_new_job_for_its_budget_then_gives_up():
    """_watch (the spin before a worker sleeps) returns True as soon as a job is posted, False once its budget of
    cycles has passed with none."""
    posted = np.zeros(1, np.int64)
    budget = int(200e3 * threads._cycles_per_us())      # 200 ms: ample for the other thread's post
    poster = threading.Timer(0.01, lambda: posted.__setitem__(0, 1))
    poster.start()
    assert threads._watch(posted, 0, budget)
    poster.join()
    assert not threads._watch(posted, 1, int(1e3 * threads._cycles_per_us()))     # 1 ms and nothing posted


def test_the_spin_setting(monkeypatch):
    from pydarknet.errors import DarknetError
    try:
        monkeypatch.setenv("PYDARKNET_SPIN_US", "0")
        threads.set_spin(None)
        assert threads._spin_cycles() == 0
        monkeypatch.setenv("PYDARKNET_SPIN_US", "250")
        threads.set_spin(None)
        assert 250 * 100 < threads._spin_cycles() < 250 * 10_000     # 0.1-10 GHz
        threads.set_spin(0)
        assert threads._spin_cycles() == 0
        monkeypatch.setenv("PYDARKNET_SPIN_US", "soon")
        threads.set_spin(None)
        with pytest.raises(DarknetError, match="PYDARKNET_SPIN_US=soon: not a whole number of microseconds"):
            threads._spin_cycles()
    finally:
        monkeypatch.delenv("PYDARKNET_SPIN_US")
        threads.set_spin(None)


def test_workers_spin_only_inside_an_inference_pass(monkeypatch):
    """Outside spinning() (training) an idle worker sleeps at once; inside (Network.predict) it spins its budget."""
    monkeypatch.setattr(threads, "_spin_cycles", lambda: 1000)
    assert threads._spin_budget() == 0
    with threads.spinning():
        assert threads._spin_budget() == 1000
    assert threads._spin_budget() == 0


def test_inference_runs_on_one_thread_while_the_cores_are_shared(monkeypatch):
    """SHARED_PASSES passes in a row whose threads got under SHARED_SHARE of their time (a busy process on a core)
    move inference to one thread; a pass tries all threads again every PROBE_EVERY passes or PROBE_AFTER_S seconds,
    and a probe that finds the cores free brings them back. The thread count is restored after every pass."""
    import numba
    n = numba.get_num_threads()
    if n < 2:
        pytest.skip("one Numba thread: nothing to cut")
    monkeypatch.setattr(threads, "_sharing", {"low": 0, "one": False, "since": 0, "probed": 0.0})
    monkeypatch.setattr(threads, "numba_threads_spin", lambda: True)
    clock = {"wall": 0.0, "cpu": 0.0}
    monkeypatch.setattr(threads, "_clocks", lambda: (clock["wall"], clock["cpu"]))
    placed = []
    monkeypatch.setattr(threads, "place_workers", lambda: placed.append(numba.get_num_threads()))

    def run(share):
        """A 10 ms pass whose threads ran `share` of it; the thread count inside (the workers placed first on all
        threads only)."""
        placed.clear()
        with threads.inference_pass():
            inside = numba.get_num_threads()
            clock["wall"] += 0.01
            clock["cpu"] += share * n * 0.01
        assert numba.get_num_threads() == n
        assert placed == ([n] if inside == n else [])
        return inside

    assert [run(0.5), run(0.95), run(0.5)] == [n] * 3          # a free pass between two shared ones: no cut
    assert run(0.5) == n                                        # the second shared pass in a row ...
    shared = [run(0.5) for _ in range(2 * threads.PROBE_EVERY)]
    assert shared.count(n) == 2 and shared.count(1) == len(shared) - 2      # ... then one thread, two probes
    assert run(0.5) == 1
    clock["wall"] += threads.PROBE_AFTER_S                      # a second later the next pass probes anyway
    assert run(0.5) == n and run(0.5) == 1
    while run(0.95) == 1:                                       # the next probe finds the cores free
        pass
    assert run(0.95) == n and run(0.95) == n
    with threads.inference_pass():                              # under 2 ms: says nothing
        clock["wall"] += 0.001
    assert threads._sharing["low"] == 0


def test_a_pass_holds_each_worker_to_a_cpu_other_than_its_own(monkeypatch):
    """place_workers (each inference pass on all threads): every Numba worker bound to one allowed CPU, not the one
    the calling thread runs on, whose own mask stays whole; with one CPU allowed nothing is bound."""
    import ctypes
    import numba
    allowed = os.sched_getaffinity(0)
    if numba.get_num_threads() < 2 or len(allowed) < 2 or threads._worker_tids(numba.get_num_threads()) is None:
        pytest.skip("one Numba thread, one CPU, or no known gettid here")
    tids = threads._worker_tids(numba.get_num_threads())
    assert tids[0] == threading.get_native_id() and len(set(tids)) == len(tids)
    monkeypatch.setitem(threads._placed, "cpus", None)
    try:
        here = ctypes.CDLL(None).sched_getcpu()
        threads.place_workers()
        for tid in tids[1:]:
            bound = os.sched_getaffinity(tid)
            assert len(bound) == 1 and bound <= allowed
            if os.sched_getaffinity(0) == allowed and ctypes.CDLL(None).sched_getcpu() == here:
                assert here not in bound
        assert os.sched_getaffinity(0) == allowed
        monkeypatch.setitem(threads._placed, "cpus", None)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {min(allowed)})
        monkeypatch.setattr(os, "sched_setaffinity", lambda *a: pytest.fail("bound with one CPU allowed"))
        threads.place_workers()
    finally:
        monkeypatch.undo()
        for tid in tids[1:]:
            os.sched_setaffinity(tid, allowed)
        threads._placed["cpus"] = None          # unbound again: the next pass binds them


def test_numba_threads_spin_unless_told_not_to(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("GOMP_SPINCOUNT", "15000")
    assert threads.numba_threads_spin()
    monkeypatch.setenv("GOMP_SPINCOUNT", "0")               # ranks sharing the cores (cli.start_world)
    assert not threads.numba_threads_spin()
    monkeypatch.setenv("GOMP_SPINCOUNT", "15000")
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert not threads.numba_threads_spin()


def test_pydarknet_sets_a_bounded_spin_for_numba_threads():
    """At import: GOMP_SPINCOUNT from PYDARKNET_SPIN_US (15 spins a microsecond), none where the environment chose
    a policy; at most 1 ms at 60 ns a spin."""
    code = "import os, pydarknet; print(os.environ.get('GOMP_SPINCOUNT'))"
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "PYDARKNET_SPIN_US")}
    said = [subprocess.run([sys.executable, "-c", code], env=dict(env, **extra), capture_output=True, text=True,
                           timeout=60).stdout.strip() for extra in ({}, {"PYDARKNET_SPIN_US": "200"},
                                                                   {"OMP_WAIT_POLICY": "PASSIVE"})]
    assert said == ["15000", "3000", "None"]
    assert 15000 * 60e-9 <= 1e-3


def test_numpys_cblas_sgemm_runs_inside_numba_kernels():
    """sgemm.py finds numpy's cblas_sgemm; its kernels give numpy's own products (the same BLAS function, the same
    sums to the bit): whole, in pieces of rows or columns over Numba's threads, on transposed views, and plane by
    plane with the planes read in another order and transposed (Winograd's turned filters)."""
    from pydarknet.backend.cpu import sgemm
    blas = sgemm.library()
    assert blas is not None, "numpy's BLAS exports none of sgemm.SYMBOLS"
    threads.limit_blas()
    rng = np.random.default_rng(5)
    a = rng.standard_normal((70, 300)).astype(np.float32)
    b = rng.standard_normal((300, 90)).astype(np.float32)
    out = np.full((70, 90), np.nan, np.float32)
    sgemm.product(*blas, a, b, out)
    assert np.array_equal(out, np.matmul(a, b))
    sgemm.product(*blas, np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T, out)     # column-major views
    assert np.array_equal(out, np.matmul(a, b))
    for step, by_columns in ((16, True), (7, False)):
        out[:] = np.nan
        sgemm.pieces(*blas, a, b, out, step, by_columns, a[0], a[0], a[0], 0, False)
        pieces = ([np.matmul(a, b[:, i:i + step]) for i in range(0, 90, step)] if by_columns else
                  [np.matmul(a[i:i + step], b) for i in range(0, 70, step)])
        assert np.array_equal(out, np.concatenate(pieces, axis=1 if by_columns else 0))
    u = rng.standard_normal((16, 12, 20)).astype(np.float32)
    v = rng.standard_normal((16, 12, 33)).astype(np.float32)
    m = np.full((16, 20, 33), np.nan, np.float32)
    order = rng.permutation(16)
    sgemm.planes(*blas, u, v, m, order, True)
    assert all(np.array_equal(m[i], np.matmul(u[order[i]].T, v[i])) for i in range(16))
    assert not sgemm.fits(a, b, out[:, ::2][:, :45])         # a strided output: the threads.py path instead


def test_without_numpys_cblas_sgemm_the_gemms_run_on_pydarknets_threads(monkeypatch):
    """Where numpy's BLAS exports no cblas_sgemm (sgemm.library() None), gemm and Winograd take threads.py's
    pieces: the same products."""
    from pydarknet.backend.cpu import sgemm, winograd
    rng = np.random.default_rng(6)
    a = rng.standard_normal((40, 64)).astype(np.float32)
    b = rng.standard_normal((64, 5000)).astype(np.float32)
    x = rng.standard_normal((1, 32, 12, 12)).astype(np.float32)
    weights = rng.standard_normal((16, 32 * 9)).astype(np.float32)
    u = winograd.transform_weights(weights, 32)
    ours = cpu.gemm(a, b), winograd.convolve(x, u, 1, np.empty((1, 16, 12, 12), np.float32))
    monkeypatch.setattr(sgemm, "library", lambda: None)
    theirs = cpu.gemm(a, b), winograd.convolve(x, u, 1, np.empty((1, 16, 12, 12), np.float32))
    assert all(np.array_equal(o, t) for o, t in zip(ours, theirs))


def test_an_lp64_cblas_sgemm_gets_32_bit_sizes():
    """The kernels call an LP64 BLAS (32-bit sizes, `wide` False) as well as numpy's ILP64 one: scipy's OpenBLAS
    exports scipy_cblas_sgemm, the same product."""
    import ctypes
    import glob
    scipy = pytest.importorskip("scipy")
    from pydarknet.backend.cpu import sgemm
    found = glob.glob(os.path.join(os.path.dirname(scipy.__file__), os.pardir, "scipy.libs", "libscipy_openblas*.so"))
    function = getattr(ctypes.CDLL(found[0]), "scipy_cblas_sgemm", None) if found else None
    if function is None:
        pytest.skip("no LP64 scipy_cblas_sgemm in scipy's wheel")
    rng = np.random.default_rng(7)
    a = rng.standard_normal((9, 31)).astype(np.float32)
    b = rng.standard_normal((31, 12)).astype(np.float32)
    out = np.full((9, 12), np.nan, np.float32)
    sgemm.product(ctypes.cast(function, ctypes.c_void_p).value, False, a, b.T.copy().T, out)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)


def test_ranks_sharing_a_machine_do_not_spin(monkeypatch):
    """cli.start_world under a launcher with 2 ranks on this machine: threads.py's workers and (through
    GOMP_SPINCOUNT, read when Numba's threads start after it) Numba's threads do not spin; each rank gets its share
    of the cores."""
    import types
    from pydarknet import cli
    world = types.SimpleNamespace(local_size=2, size=2, rank=0)
    monkeypatch.setattr(cli.parallel, "launched_size", lambda: 2)
    monkeypatch.setattr(cli.parallel, "world", lambda gpu=None: world)
    monkeypatch.setattr(cli.launch, "check_ranks", lambda w: None)
    monkeypatch.setenv("GOMP_SPINCOUNT", "15000")
    try:
        assert cli.start_world(nogpu=True, gpus=None) == max(1, (os.cpu_count() or 1) // 2)
        assert os.environ["GOMP_SPINCOUNT"] == "0" and not threads.numba_threads_spin()
        assert threads._spin_cycles() == 0
    finally:
        threads.set_spin(None)
