"""[softmax]: softmax over each group of the input (classification head), with temperature."""
from ..backend import ops_of
from .base import Layer, positive


class Softmax(Layer):
    type = "softmax"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        if s.has("tree"):
            raise s.error("softmax trees (hierarchical classes) are not supported yet", "tree")
        groups = positive(s, "groups", s.int("groups", 1))
        c, h, w = in_shape
        if (c * h * w) % groups:
            raise s.error(f"groups={groups} must divide the {c * h * w} inputs", "groups")
        return cls(in_shape, groups, s.float("temperature", 1.0))

    def __init__(self, in_shape, groups, temperature):
        super().__init__(in_shape)
        self.groups, self.temperature = groups, temperature

    def darknet_out_shape(self):
        return 0, 0, 0

    def describe(self):
        return f"softmax                                        {self.inputs:4d}"

    def forward(self, x, net):
        y = self.new_output(x.shape[0])
        n = self.inputs // self.groups
        ops_of(x).softmax_forward(x.reshape(x.shape[0], -1), n, self.groups, n, 1, self.temperature,
                                  y.reshape(x.shape[0], -1))
        return y
