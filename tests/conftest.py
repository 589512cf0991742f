"""Shared fixtures: where the original Darknet's reference material lives."""
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


def run_cli(*args, cwd, umask=-1, timeout=300):
    """`python -m pydarknet ARGS` in a process of its own, as a user runs it: its exit code, stdout and stderr."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "pydarknet", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, umask=umask)


def reference_dir():
    """The folder of Darknet's cfgs, images and goldens: $PYDARKNET_REFERENCE or ../shared/darknet."""
    return pathlib.Path(os.environ.get("PYDARKNET_REFERENCE", REPO.parent / "shared" / "darknet"))


@pytest.fixture(scope="session")
def reference():
    """Path to ../shared/darknet (or $PYDARKNET_REFERENCE); skips the test with the reason when it is absent."""
    path = reference_dir()
    if not (path / "golden").is_dir():
        pytest.skip(f"Darknet reference material not found at {path} (set PYDARKNET_REFERENCE)")
    return path


@pytest.fixture(scope="session")
def golden(reference):
    return reference / "golden"


@pytest.fixture(params=["cpu", "emulated-gpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def device(request, monkeypatch):
    """Where a golden-parity test runs its network: the CPU kernels; a GPU played by the CPU (tests/cuda_emulator.py:
    the GPU backend's code and CUDA kernels on device arrays that refuse to mix with host arrays), which needs no
    GPU; a real GPU, skipped with the reason when this machine has none. Tests build or move their network there."""
    from pydarknet import backend
    if request.param == "emulated-gpu":
        import cuda_emulator
        cuda_emulator.install_gpu(monkeypatch)
        return 0
    if request.param == "gpu":
        problem = backend.gpu_problem(0)
        if problem:
            pytest.skip(problem)
        return 0
    return "cpu"
