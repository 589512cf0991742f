"""[cost]: a loss on the previous layer's output (sse by default); it leaves the network's output alone."""
from .base import Layer

COST_TYPES = ("sse", "masked", "smooth", "L1", "seg", "wgan", "logistic")


class Cost(Layer):
    type = "cost"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        cost_type = s.str("type", "sse")
        if cost_type not in COST_TYPES:
            raise s.error(f"unknown cost type '{cost_type}' (Darknet knows {', '.join(COST_TYPES)})", "type")
        return cls(in_shape, cost_type, s.float("scale", 1.0))

    def __init__(self, in_shape, cost_type, scale):
        super().__init__(in_shape)
        self.cost_type, self.scale = cost_type, scale

    def darknet_lwhc(self):
        return 0, 0, 0

    def describe(self):
        return f"cost                                           {self.inputs:4d}"

    def forward(self, x, net):
        # Without truth Darknet computes nothing here; the output is the loss per value, filled in training.
        y = self.new_output(x.shape[0])
        y[...] = 0
        return y
