"""What a trainer does differently on several ranks, by `-sync` mode (the Training loop calls these hooks).

- OneProcess: nothing (one rank).
- AllreduceSync (`-sync allreduce`): the cfg's batch is the global batch, each minibatch split evenly over the
  ranks; the updates are summed over the ranks before every SGD step and batch-norm sums its statistics and its
  backward sums over them, so N ranks compute what one process computes, to float rounding.
- DarknetSync (`-sync darknet`, pjreddie's -gpus): every rank trains a whole cfg batch with the learning rate
  times N, the weights are averaged every 4 steps and before every save, and `seen` jumps as pjreddie's does.

Every array travels in one flat buffer per collective (Horovod's tensor fusion).
"""
import contextlib

import numpy as np

from ..backend import xp_of
from ..errors import DarknetError
from .comm import Single

UPDATES = ("weight_updates", "bias_updates", "scale_updates")
AVERAGED = ("weights", "biases", "scales")          # every layer that has them (Darknet: conv and connected only)
ROLLING = ("rolling_mean", "rolling_variance")
SYNC_MODES = ("allreduce", "darknet")


def arrays_of(net, names):
    """The layers' arrays of these names, in layer order (the same list on every replica)."""
    return [getattr(layer, name) for layer in net.layers for name in names if getattr(layer, name, None) is not None]


def fused(arrays, collective):
    """Apply `collective` to the arrays packed into one flat buffer, and unpack the result into them."""
    if not arrays:
        return
    xp = xp_of(arrays[0])
    buffer = xp.concatenate([a.ravel() for a in arrays])
    collective(buffer)
    offset = 0
    for a in arrays:
        a[...] = buffer[offset:offset + a.size].reshape(a.shape)
        offset += a.size


class OneProcess:
    """One rank: the hooks do nothing. `size` is how many networks train together (1)."""

    mode = None

    def __init__(self, comm=None):
        self.comm = comm or Single()

    @property
    def size(self):
        return self.comm.size

    def prepare(self, net, cfgfile):
        """After the network is built: rank 0's weights, rolling statistics and `seen` on every rank."""
        if self.comm.size > 1:
            fused(arrays_of(net, AVERAGED + ROLLING), self.comm.broadcast)
            net.seen = self.comm.broadcast_object(net.seen)
            net.weights_changed()

    def loader_batch(self, images):
        """How many images the loader draws for a step of `images` (the cfg's batch x subdivisions), and the slots
        of them this rank trains on (None: all)."""
        return images, None

    def step_images(self, images):
        """The images every rank together trains on in one step."""
        return images

    def before_step(self, net):
        pass

    def agree(self, net, loss, interrupted):
        """After a step: the loss of every rank's images, and whether any rank hit a non-finite loss or Ctrl-C
        (so that every rank stops at the same iteration)."""
        if self.comm.size == 1:
            return loss, interrupted
        flags = np.array([loss if np.isfinite(loss) else 0.0, not np.isfinite(loss), interrupted], np.float64)
        self.comm.allreduce(flags)
        return (flags[0] / self.comm.size if not flags[1] else float("nan")), bool(flags[2])

    def after_step(self, net):
        pass

    def before_save(self, net):
        pass

    def evaluated(self, net):
        """A context for -map: the network every rank evaluates its share of the valid list with."""
        return contextlib.nullcontext()


class AllreduceSync(OneProcess):
    """`-sync allreduce`: N ranks compute what one process computes for the cfg (synchronised batch-norm)."""

    mode = "allreduce"

    def prepare(self, net, cfgfile):
        size = self.comm.size
        if net.batch % size:
            raise DarknetError(f"{cfgfile}: -sync allreduce splits each minibatch of batch/subdivisions = {net.batch} "
                               f"images over {size} ranks, and {size} does not divide {net.batch} (make batch= a "
                               f"multiple of {size * net.subdivisions})")
        super().prepare(net, cfgfile)
        self.chunks = net.subdivisions
        net.replicas = self

    def loader_batch(self, images):
        """One process's draws; rank r's slots are the r-th share of each minibatch (net.batch images)."""
        chunk = images // self.chunks
        share = chunk // self.comm.size
        start = self.comm.rank * share
        return images, [c * chunk + start + j for c in range(self.chunks) for j in range(share)]

    def before_step(self, net):
        """The *_updates hold the momentum kept from the last step, the same on every rank: rank 0 keeps it, the
        others start from zero, so that the sum after backward is that momentum plus every rank's gradient."""
        if self.comm.rank:
            for a in arrays_of(net, UPDATES):
                a.fill(0)

    def sum_updates(self, net):
        """Before the SGD step (Network.update): the updates summed over the ranks."""
        fused(arrays_of(net, UPDATES), self.comm.allreduce)

    def sum(self, buffer):
        """A batch-norm's per-channel sums, summed over the ranks (the GPU backend's batch_stats and
        batchnorm_backward under synchronised batch-norm)."""
        return self.comm.allreduce(buffer)

    def relay(self, compute, like):
        """The CPU backend's: Darknet's float32 sums run on from rank to rank in rank order (rank r starts from
        rank r-1's sums: the order one process adds the whole batch in), and every rank gets the last one's."""
        return self.comm.relay(compute, like)


class DarknetSync(OneProcess):
    """`-sync darknet`: pjreddie's train_networks and sync_nets on ranks instead of threads."""

    mode = "darknet"
    interval = 4

    def prepare(self, net, cfgfile):
        super().prepare(net, cfgfile)
        net.learning_rate *= self.comm.size         # train_detector: nets[i]->learning_rate *= ngpus

    def loader_batch(self, images):
        """get_data_part: rank r trains on the r-th contiguous slice of `images` x N loaded images."""
        rank = self.comm.rank
        return images * self.comm.size, list(range(rank * images, (rank + 1) * images))

    def step_images(self, images):
        return images * self.comm.size

    def after_step(self, net):
        """train_networks: at every `interval`-th batch of the counter, sync_nets (the counter jumps)."""
        if net.current_batch() % self.interval == 0:
            self.sync(net, self.interval)

    def before_save(self, net):
        self.sync(net, 0)

    def sync(self, net, interval):
        """sync_nets: seen += interval*(n-1)*batch*subdivisions, and the weights averaged over the replicas
        (every layer that has weights, where Darknet's merge_weights skips [local] and [batchnorm])."""
        net.seen += interval * (self.comm.size - 1) * net.batch * net.subdivisions
        fused(arrays_of(net, AVERAGED), lambda buffer: self.comm.allreduce(buffer, mean=True))
        net.weights_changed()

    def evaluated(self, net):
        """-map after the averaging: rank 0's rolling statistics on every rank while it runs (Darknet evaluates
        nets[0]), each replica's own again afterwards."""
        return _borrowed(net, self.comm)


@contextlib.contextmanager
def _borrowed(net, comm):
    """Rank 0's rolling batch-norm statistics in every replica for the duration of a `with`."""
    kept = [a.copy() for a in arrays_of(net, ROLLING)]
    fused(arrays_of(net, ROLLING), comm.broadcast)
    try:
        yield
    finally:
        for a, own in zip(arrays_of(net, ROLLING), kept):
            a[...] = own


def sync_for(mode, comm):
    """The hooks for `-sync MODE` on this communicator (OneProcess for one rank)."""
    if comm.size == 1:
        return OneProcess(comm)
    if mode not in SYNC_MODES:
        raise DarknetError(f"-sync must be one of {', '.join(SYNC_MODES)}, not '{mode}'")
    return {"allreduce": AllreduceSync, "darknet": DarknetSync}[mode](comm)
