"""The GPU backend without a GPU: its CUDA sources compile with NVRTC, its interface is backend/cpu/'s, its code (with
the kernels run on the CPU by tests/cuda_emulator.py) gives the CPU's numbers, and the device is chosen as Darknet
chooses it. The golden suites (test_forward, test_detections, test_training) run on a real GPU where one is."""
import ast
import inspect
import json
import subprocess
import sys

import numpy as np
import pytest

import cuda_emulator
from pydarknet import backend, cli
from pydarknet.activations import LEAKY, LOGISTIC
from pydarknet.backend import cpu, ops
from pydarknet.backend.cuda import ops as cuda_ops
from pydarknet.cfg import read_cfg
from pydarknet.errors import DarknetError
from pydarknet.network import Network
from pydarknet.data.shapes import generate
from pydarknet.weights import load_weights, save_weights

from conftest import REPO


# ---- the CUDA sources compile, without a GPU -------------------------------------------------------------------

def nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
    except Exception as e:  # noqa: BLE001  (no CuPy, or no NVRTC library: `make nvrtc` brings both)
        pytest.skip(f"NVRTC is not available ({e}); `make nvrtc` (or make GPU=1) brings cupy-cuda12x and "
                    f"nvidia-cuda-nvrtc-cu12")
    return nvrtc


def compile_ptx(source, arch):
    lib = nvrtc()
    program = lib.createProgram(source, "kernels.cu", [], [])
    try:
        lib.compileProgram(program, list(cuda_ops.OPTIONS) + [f"--gpu-architecture=compute_{arch}"])
        return lib.getPTX(program).decode() if isinstance(lib.getPTX(program), bytes) else lib.getPTX(program)
    except lib.NVRTCError:
        raise AssertionError(lib.getProgramLog(program)) from None
    finally:
        lib.destroyProgram(program)


@pytest.mark.nvrtc
@pytest.mark.parametrize("arch", [75, 90])   # Turing (the oldest CUDA 13 supports) and Hopper
def test_every_kernel_compiles_with_nvrtc(arch):
    ptx = compile_ptx(cuda_ops.kernel_source(), arch)
    names = cuda_ops.kernel_names()
    assert len(names) == len(set(names)) >= 19
    for name in names:
        assert f".entry {name}(" in ptx, f"{name} is missing from the PTX"


@pytest.mark.nvrtc
def test_nvrtc_reports_a_broken_source():
    """The compile above is a real one: a typo in a kernel fails with NVRTC's log."""
    broken = cuda_ops.kernel_source().replace("x[i] = activate_fast(x[i], a);", "x[i] = activate_fast(x[i], a)")
    with pytest.raises(AssertionError, match="expected a \";\""):
        compile_ptx(broken, 90)


@pytest.fixture
def emulated():
    if not cuda_emulator.available():
        pytest.skip("no C++ compiler (g++) to run the CUDA kernels on the CPU")
    return cuda_emulator.emulated_ops()


# ---- one interface -------------------------------------------------------------------------------------------

PACKAGE = REPO / "pydarknet"


def public_definitions(path, scope=None):
    """The public names a file defines by name (def, class, assignment; not imports), at its top level or in the
    body of class `scope` (there also `self.NAME = ...` in __init__)."""
    body = ast.parse(path.read_text()).body
    if scope is not None:
        body = next(node for node in body if isinstance(node, ast.ClassDef) and node.name == scope).body
        init = next(node for node in body if isinstance(node, ast.FunctionDef) and node.name == "__init__")
        body = body + [node for node in ast.walk(init) if isinstance(node, ast.Assign)
                       and all(isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
                               for t in node.targets)]
    names = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                names.add(target.id if isinstance(target, ast.Name) else target.attr)
    return {name for name in names if not name.startswith("_") and name != "__init__"}


def parameters(function, drop_self=False):
    found = [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]
    return found[1:] if drop_self else found


CPU = PACKAGE / "backend" / "cpu"
# convolution.py's helpers, CPU-only: no op here
CPU_HELPERS = {"winograd.py", "direct.py", "threads.py", "simd.py", "sgemm.py"}


def bound_names(path):
    """The public names a module binds at its top level: what it defines (public_definitions) and what it imports."""
    names = set(public_definitions(path))
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return {name for name in names if not name.startswith("_")}


def shared_helpers(folder):
    """The names that the modules of a package import from one another (`from .module import name`)."""
    names = set()
    for path in folder.glob("*.py"):
        if path.name != "__init__.py":
            names |= {alias.name for node in ast.parse(path.read_text()).body
                      if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module for alias in node.names}
    return names


def test_ops_py_backend_cpu_and_cuda_ops_declare_the_same_ops_both_ways():
    """ops.__all__ is the interface. The modules of backend/cpu/ define exactly those ops, each in one module and by
    name (grep and go-to-definition find them); their other public names are helpers that another of them imports
    (winograd.py, direct.py, threads.py and simd.py, the convolution's helpers, define no op); cpu/__init__.py binds
    exactly the ops (`import numpy as xp` is the op xp); CudaOps defines exactly those, by name; and the two backends'
    signatures are the same."""
    declared = set(ops.__all__)
    assert len(ops.__all__) == len(declared), "an op is listed twice in ops.__all__"
    layer_calls = {"bias_activate", "activate", "batch_stats", "batchnorm_train", "convolution_forward",
                   "convolution_backward", "maxpool_forward", "maxpool_backward", "avgpool_forward", "gradient",
                   "upsample_forward", "upsample_backward", "reorg_forward", "reorg_backward", "shortcut_forward",
                   "shortcut_backward", "local_forward", "local_backward", "im2col", "col2im", "softmax_forward",
                   "batchnorm_backward", "flush", "gemm"}
    assert layer_calls <= declared
    defined = {}
    for path in sorted(CPU.glob("*.py")):
        if path.name != "__init__.py":
            for name in public_definitions(path):
                defined.setdefault(name, []).append(path.name)
    op_modules = {name: files for name, files in defined.items() if name in declared}
    assert set(op_modules) == declared - {"xp"}, f"not defined in backend/cpu/: {declared - {'xp'} - set(op_modules)}"
    twice = {name: files for name, files in op_modules.items() if len(files) > 1}
    assert not twice, f"ops defined in two modules of backend/cpu/: {twice}"
    assert not {name for name, files in op_modules.items() if CPU_HELPERS & set(files)}, "the helpers are not ops"
    shared = shared_helpers(CPU)
    stray = {name: files for name, files in defined.items()
             if name not in declared | shared and set(files) - CPU_HELPERS}
    assert not stray, f"public names of backend/cpu/ that are neither ops nor helpers its modules share: {stray}"
    assert bound_names(CPU / "__init__.py") == declared
    submodules = {name for name, value in vars(cpu).items()
                  if inspect.ismodule(value) and value.__name__.startswith(cpu.__name__ + ".")}
    assert {name for name in vars(cpu) if not name.startswith("_")} - submodules == declared
    assert public_definitions(PACKAGE / "backend" / "cuda" / "ops.py", scope="CudaOps") == declared
    instance = cuda_ops.CudaOps(np, kernel=None)
    assert {name for name in dir(instance) if not name.startswith("_")} == declared
    assert cpu.xp is np and instance.xp is np
    for name in sorted(declared - {"xp"}):
        assert parameters(getattr(cuda_ops.CudaOps, name), drop_self=True) == parameters(getattr(cpu, name)), name


def test_only_cuda_device_py_imports_cupy():
    """CuPy is imported in one place, backend/cuda/device.py, which the backend loads once a GPU is asked for;
    CudaOps (cuda/ops.py) and the rest of the package run without it."""
    importers = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            if any(module.split(".")[0] in ("cupy", "cupy_backends", "cupyx") for module in modules):
                importers.add(path.relative_to(PACKAGE).as_posix())
    assert importers == {"backend/cuda/device.py"}


def op_names_used(tree):
    """NAME for every `ops_of(...).NAME`, `v.NAME` with v bound to `ops_of(...)` in the same function, and
    `cpu.NAME` (the CPU ops reached directly); and the places where a name bound to ops_of(...) is used other than
    by attribute, which would hide what it calls."""
    def is_ops_of(node):
        return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ops_of"

    used, escapes = set(), []
    scopes = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for scope in [tree] + scopes:
        bound = {t.id for node in ast.walk(scope) if isinstance(node, ast.Assign) and is_ops_of(node.value)
                 for t in node.targets if isinstance(t, ast.Name)}
        attribute_values = set()
        for node in ast.walk(scope):
            if isinstance(node, ast.Attribute):
                attribute_values.add(id(node.value))
                if is_ops_of(node.value) or (isinstance(node.value, ast.Name)
                                             and (node.value.id in bound or node.value.id == "cpu")):
                    used.add(node.attr)
        escapes += [node.lineno for node in ast.walk(scope) if isinstance(node, ast.Name) and node.id in bound
                    and isinstance(node.ctx, ast.Load) and id(node) not in attribute_values]
    return used, sorted(set(escapes))


def test_every_op_the_layers_call_is_declared():
    """Every op reached through ops_of(x) (or the cpu package) outside the backend is in ops.__all__."""
    called = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "backend" in path.relative_to(PACKAGE).parts:
            continue
        used, escapes = op_names_used(ast.parse(path.read_text()))
        assert not escapes, f"{path.name}, lines {escapes}: ops_of(...) bound to a name used other than as ops.NAME"
        for name in used:
            called.setdefault(name, []).append(path.name)
    assert {"convolution_forward", "convolution_workspace", "flush", "xp", "maxpool_backward"} <= set(called)
    undeclared = {name: files for name, files in called.items() if name not in ops.__all__}
    assert not undeclared, f"ops called but not declared in backend/ops.py: {undeclared}"


def test_no_name_is_made_at_run_time():
    """No globals().update: every name in the package has a definition that grep finds."""
    for path in sorted(PACKAGE.rglob("*.py")):
        calls = [node.lineno for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Name) and node.func.id == "globals"]
        assert not calls, f"{path}: globals() at lines {calls}"


def test_kernel_arguments_are_checked_as_cuda_would_read_them(emulated):
    """The emulator refuses what a RawKernel call would silently misread: a Python int for an int parameter, a
    float64 array, a strided array."""
    kernel = cuda_emulator.Emulator()("activate_kernel")
    x = np.zeros(4, np.float32)
    kernel((1,), (1,), (x, np.int64(4), np.int32(LEAKY)))
    with pytest.raises(AssertionError, match="int32 expected"):
        kernel((1,), (1,), (x, np.int64(4), LEAKY))
    with pytest.raises(AssertionError, match="float array"):
        kernel((1,), (1,), (x.astype(np.float64), np.int64(4), np.int32(LEAKY)))
    with pytest.raises(AssertionError, match="not contiguous"):
        kernel((1,), (1,), (np.zeros(8, np.float32)[::2], np.int64(4), np.int32(LEAKY)))


# ---- the GPU backend's code gives the CPU's numbers ------------------------------------------------------------

@pytest.mark.parametrize("size,stride,pad,groups", [(3, 1, 1, 1), (3, 2, 1, 2), (1, 1, 0, 1), (1, 1, 0, 3),
                                                    (5, 3, 2, 1), (2, 2, 0, 1)])
def test_batched_convolution_in_chunks_matches_cpu(emulated, monkeypatch, size, stride, pad, groups):
    """The GPU's convolution works on chunks of images at once; chunks of 2 of 5 images here."""
    rng = np.random.default_rng(0)
    batch, c, h, w, k = 5, 6, 7, 9, 12
    out_h, out_w = (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1
    monkeypatch.setattr(cuda_ops, "COLUMN_FLOATS", 2 * c // groups * size * size * out_h * out_w)
    x = rng.standard_normal((batch, c, h, w)).astype(np.float32)
    weights = rng.standard_normal((k, c // groups * size * size)).astype(np.float32)
    delta = rng.standard_normal((batch, k, out_h, out_w)).astype(np.float32)
    epilogue = (rng.standard_normal(k).astype(np.float32), LEAKY, (rng.random(k) + .5).astype(np.float32),
                rng.standard_normal(k).astype(np.float32), (rng.random(k) + .5).astype(np.float32))
    results = []
    for kernels in (cpu, emulated):
        y = np.empty((batch, k, out_h, out_w), np.float32)
        kernels.convolution_forward(x, weights, size, stride, pad, groups, y)
        finished = np.empty_like(y)         # with batch-norm, bias and leaky applied (inference)
        kernels.convolution_forward(x, weights, size, stride, pad, groups, finished, epilogue=epilogue)
        updates = np.ones_like(weights)
        dx = np.full_like(x, .5)
        kernels.convolution_backward(x, delta, weights, size, stride, pad, groups, updates, dx)
        results.append((y, finished, updates, dx))
    for ours, theirs, what in zip(results[1], results[0], ("output", "finished output", "weight updates",
                                                           "input gradient")):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5, err_msg=what)


@pytest.mark.parametrize("size,stride,padding", [(2, 2, 1), (3, 1, 2), (3, 2, 2), (5, 3, 4), (1, 1, 0)])
def test_maxpool_gather_backward_matches_cpu(emulated, size, stride, padding):
    rng = np.random.default_rng(1)
    x = rng.integers(-3, 3, (2, 3, 9, 8)).astype(np.float32)      # ties: the first maximum wins on both
    out_h, out_w = (9 + padding - size) // stride + 1, (8 + padding - size) // stride + 1
    delta = rng.standard_normal((2, 3, out_h, out_w)).astype(np.float32)
    results = []
    for kernels in (cpu, emulated):
        y = np.empty((2, 3, out_h, out_w), np.float32)
        _, argmax = kernels.maxpool_forward(x, size, stride, padding, y)
        dx = np.full_like(x, .25)
        kernels.maxpool_backward(delta, argmax, size, stride, padding, dx)
        results.append((y, argmax, dx))
    for ours, theirs in zip(*results):
        np.testing.assert_array_equal(ours, theirs)


def test_softmax_over_strided_rows_matches_cpu(emulated):
    """The region layer's softmax reads rows of a wider array."""
    rng = np.random.default_rng(2)
    wide = rng.standard_normal((4, 30)).astype(np.float32)
    outs = []
    for kernels in (cpu, emulated):
        y = np.zeros((4, 30), np.float32)
        kernels.softmax_forward(wide[:, 6:], 3, 8, 1, 8, .7, y[:, 6:])
        outs.append(y)
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-6, atol=1e-7)
    assert not outs[1][:, :6].any()


def test_activation_on_a_strided_view_matches_cpu(emulated):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, 3, 7, 5)).astype(np.float32)
    b = a.copy()
    cpu.activate(a[:, :, 0:2], LOGISTIC)
    emulated.activate(b[:, :, 0:2], LOGISTIC)
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=0)


# ---- choosing the device ---------------------------------------------------------------------------------------

@pytest.fixture
def build(tmp_path, monkeypatch):
    """Write a build record (as `make install GPU=...` does) and clear the command line's choice."""
    monkeypatch.delenv("PYDARKNET_GPU", raising=False)
    monkeypatch.setattr(backend, "BUILD_RECORD", tmp_path / "_build_config.json")
    monkeypatch.setattr(backend, "_requested", None)
    monkeypatch.setattr(backend, "_reported", set())

    def record(gpu):
        subprocess.run(["make", "-s", "-C", str(REPO), "record-build", f"GPU={gpu}",
                        f"BUILD_RECORD={backend.BUILD_RECORD}"], check=True)
        return json.loads(backend.BUILD_RECORD.read_text())
    return record


def expect_gpu_or_fallback(device, index, capsys):
    """On a machine where GPU `index` works, the device is it; elsewhere the CPU, with one line saying why."""
    problem = backend.gpu_problem(index)
    err = capsys.readouterr().err
    if problem is None:
        assert device == index and err == ""
    else:
        assert device == "cpu"
        assert err == f"pydarknet: {problem}; running on the CPU\n"
        assert f"GPU {index}" in err


@pytest.mark.gpu
def test_cpu_build_runs_on_the_cpu(build, capsys):
    assert build(0)["gpu"] == 0
    assert backend.default_device() == "cpu"
    assert capsys.readouterr().err == ""


@pytest.mark.gpu
def test_gpu_build_uses_gpu_0_or_says_why_not(build, capsys):
    assert build(1)["gpu"] == 1
    expect_gpu_or_fallback(backend.default_device(), 0, capsys)
    backend.default_device()
    assert capsys.readouterr().err == "", "the fallback is reported once"


@pytest.mark.gpu
def test_nogpu_and_i_flags(build, capsys):
    build(1)
    cli.select_device(True, "2", None)
    assert backend.default_device() == "cpu"
    cli.select_device(False, "2", None)
    expect_gpu_or_fallback(backend.default_device(), 2, capsys)
    cli.select_device(False, None, "3,4")
    expect_gpu_or_fallback(backend.default_device(), 3, capsys)
    build(0)                                    # Darknet's CPU build ignores -i
    cli.select_device(False, "2", None)
    assert backend.default_device() == "cpu"


@pytest.mark.gpu
def test_environment_overrides_build_and_flags(build, monkeypatch, capsys):
    build(1)
    cli.select_device(False, "1", None)
    monkeypatch.setenv("PYDARKNET_GPU", "cpu")
    assert backend.default_device() == "cpu"
    build(0)
    cli.select_device(True, None, None)
    monkeypatch.setenv("PYDARKNET_GPU", "0")
    expect_gpu_or_fallback(backend.default_device(), 0, capsys)
    monkeypatch.setenv("PYDARKNET_GPU", "first")
    with pytest.raises(DarknetError, match="PYDARKNET_GPU: 'first' is neither 'cpu' nor a GPU index"):
        backend.default_device()


@pytest.mark.gpu
def test_fallback_message_from_the_command_line(tmp_path):
    """A GPU that cannot be used: one line on stderr, the work done on the CPU, exit 0."""
    if backend.gpu_problem(7) is None:
        pytest.skip("this machine has 8 GPUs")
    env = {"PYDARKNET_GPU": "7", "PATH": "/usr/bin:/bin"}
    out = tmp_path / "r.weights"
    run = subprocess.run([sys.executable, "-m", "pydarknet", "randweights", str(REPO / "cfg" / "yolov3-tiny.cfg"),
                          str(out)], cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if "GPU" in line]
    assert len(lines) == 1 and lines[0].startswith("pydarknet: GPU 7 requested, but") \
        and lines[0].endswith("; running on the CPU")
    assert out.stat().st_size > 30_000_000


def test_network_moves_between_devices_keeping_its_weights(reference, tmp_path, monkeypatch):
    """to() moves the parameters and drops the pass state; the outputs and the weights written from the device
    are the CPU's."""
    cuda_emulator.install_gpu(monkeypatch)
    net = Network(read_cfg(reference / "testcfg" / "v3mini.cfg"), "v3mini", device="cpu")
    load_weights(net, reference / "testcfg" / "v3mini.weights")
    x = np.load(reference / "golden" / "v3mini" / "input.npy")
    on_cpu = net.predict(x).copy()
    net.to(0)
    assert all(layer.output is None for layer in net.layers)
    assert not backend.is_host(net.layers[0].weights)
    on_gpu = net.predict(x)
    assert not backend.is_host(on_gpu)
    np.testing.assert_allclose(on_gpu.get(), on_cpu, rtol=1e-5, atol=1e-6)
    save_weights(net, tmp_path / "from-gpu.weights")
    assert (tmp_path / "from-gpu.weights").read_bytes() == (reference / "testcfg" / "v3mini.weights").read_bytes()
    net.to("cpu")
    assert backend.is_host(net.layers[0].weights)
    np.testing.assert_array_equal(net.predict(x), on_cpu)


@pytest.mark.parametrize("reverse", [0, 1])
def test_reorg_flatten_on_the_gpu_matches_cpu(tmp_path, monkeypatch, reverse):
    """[reorg] flatten=1 is array reshaping, not a kernel: on the GPU it stays on the device and gives the CPU's
    output; its backward, fed its own output, gives back the input exactly (the transpose undone)."""
    cuda_emulator.install_gpu(monkeypatch)
    path = tmp_path / "flatten.cfg"
    path.write_text(f"[net]\nbatch=2\nchannels=3\nheight=2\nwidth=5\n[reorg]\nflatten=1\nreverse={reverse}\n")
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 5), dtype=np.float32)
    outputs = {}
    for device in ("cpu", 0):
        net = Network(read_cfg(path), str(path), device=device)
        net.train = True
        layer = net.layers[0]
        outputs[device] = backend.to_host(net.forward(x)).copy()
        backend.assign(layer.delta, layer.output)
        dx = backend.to_device(np.zeros_like(x), layer.output)
        with backend.on_device(net.device):
            layer.backward(net.input, dx, net)
        assert backend.is_host(dx) == (device == "cpu")
        np.testing.assert_array_equal(backend.to_host(dx), x)
    np.testing.assert_array_equal(outputs[0], outputs["cpu"])
    assert not np.array_equal(outputs["cpu"], x)


def test_detector_train_on_the_gpu_gives_the_cpus_losses(tmp_path, monkeypatch, capsys):
    """`detector train` with PYDARKNET_GPU=0, on a GPU played by the CPU: the same losses, iteration by iteration,
    as on the CPU (within float32 rounding), and weights that load back."""
    from test_train_cli import iterations, write_cfg
    data = generate(tmp_path / "shapes", n=12, size=64, seed=0).data
    cfg = write_cfg(tmp_path)
    monkeypatch.chdir(tmp_path)
    losses = {}
    for where in ("cpu", "0"):
        monkeypatch.setenv("PYDARKNET_GPU", where)
        if where == "0":
            cuda_emulator.install_gpu(monkeypatch)
        assert cli.main(["detector", "train", data, str(cfg), "-seed", "1", "-workers", "1", "-max_batches", "12"]) == 0
        losses[where] = [loss for _, loss, _ in iterations(capsys.readouterr().out)]
    assert len(losses["0"]) == len(losses["cpu"]) == 12
    np.testing.assert_allclose(losses["0"], losses["cpu"], rtol=1e-3)
    net = Network(read_cfg(cfg), str(cfg), device=0)
    load_weights(net, tmp_path / "shapes" / "backup" / "tiny_final.weights")
    assert net.seen == 12 * 4
