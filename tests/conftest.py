"""Shared fixtures: where the original Darknet's reference material lives."""
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


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
