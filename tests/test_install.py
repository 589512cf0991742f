"""What `make install` brings: the CPU build installs no CuPy (500 MB with NVRTC); GPU=1 and `make nvrtc` do."""
import runpy
import subprocess

import pytest
import setuptools

from tests.conftest import REPO


def pip_line(*make_args):
    """The pip command `make` would run (make -n prints it, running nothing)."""
    out = subprocess.run(["make", "-n", *make_args], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "pip install" in line][-1]


@pytest.fixture(scope="module")
def extras():
    """setup.py's install_requires and extras_require, read by running it with setuptools.setup captured."""
    captured = {}
    original = setuptools.setup
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    try:
        runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = original
    return dict(captured["extras_require"], install=captured["install_requires"])


def test_make_install_is_the_cpu_build_and_gpu_1_adds_cupy():
    if subprocess.run(["make", "--version"], capture_output=True).returncode != 0:
        pytest.skip("make is not installed")
    assert pip_line("install").endswith('install -e ".[test]"')
    assert pip_line("install", "GPU=1").endswith('install -e ".[test,gpu]"')
    assert pip_line("install", "GPU=1", "CUDA=13").endswith('install -e ".[test,gpu13]"')
    assert pip_line("nvrtc").endswith('install -e ".[test,gpu]"')       # what .ci/run adds for the NVRTC tests
    assert "make nvrtc" in (REPO / ".ci" / "run").read_text()


def test_only_the_gpu_extras_name_cupy_or_cuda(extras):
    def cuda_packages(requirements):
        return [r for r in requirements if r.startswith(("cupy", "nvidia-"))]
    assert cuda_packages(extras["install"]) == [] and cuda_packages(extras["test"]) == []
    assert cuda_packages(extras["gpu"]) == ["cupy-cuda12x", "nvidia-cuda-nvrtc-cu12"]
    assert cuda_packages(extras["gpu13"]) == ["cupy-cuda13x"]
