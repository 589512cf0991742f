"""[logistic]: Darknet's logistic_layer.c, a multi-label head: the logistic of each input, and in training the
binary cross-entropy of each output against its truth."""
import numpy as np

from ..activations import LOGISTIC
from ..backend import ops_of, to_device, xp_of
from .base import Layer


class Logistic(Layer):
    """Output = logistic(input), element by element (make_logistic_layer: no options, the input's shape)."""

    type = "none"       # Darknet's get_layer_string has no case for LOGXENT

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        return cls(in_shape)

    def describe(self):
        return f"logistic x entropy                             {self.inputs:4d}"

    def forward(self, x, net):
        """forward_logistic_layer: copy, activate_array LOGISTIC; with truth, logistic_x_ent_cpu:
        delta = t - p, loss = -t log(p) - (1 - t) log(1 - p), cost = the loss summed over the batch."""
        y = self.new_output(x.shape[0])
        y[...] = x
        ops_of(y).activate(y, LOGISTIC)
        if net.train and net.truth is not None:
            self.cost = self.loss(net)
        return y

    def loss(self, net):
        """logistic_x_ent_cpu on the output: delta = t - p and the summed cross-entropy."""
        y = self.output
        xp = xp_of(y)
        truth = to_device(net.truth.reshape(y.shape), y)
        self.delta[...] = truth - y
        p, t = y.astype(np.float64), truth.astype(np.float64)    # C's log() of a float is taken in double
        with np.errstate(divide="ignore", invalid="ignore"):     # p of exactly 0 or 1 gives inf or NaN, as in C
            loss = (-t * xp.log(p) - (1 - t) * xp.log(1 - p)).astype(np.float32)
        return float(loss.sum(dtype=np.float32))

    def backward(self, x, dx, net):
        """backward_logistic_layer: axpy of delta into the previous layer's. No activation gradient: t - p already
        is minus the derivative of the loss at the logistic's input (p (1 - p) cancels against the cross-entropy's)."""
        self.add_delta_to(dx)
