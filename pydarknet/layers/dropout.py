"""[dropout]: identity at inference; in training zeroes each value with `probability` and scales the rest."""
import numpy as np

from ..backend import xp_of
from .base import Layer


class Dropout(Layer):
    type = "dropout"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        probability = s.float("probability", .5)
        if not 0 <= probability < 1:
            raise s.error(f"must be in [0, 1), not {probability}", "probability")
        return cls(in_shape, probability)

    def __init__(self, in_shape, probability):
        super().__init__(in_shape)
        self.probability = probability
        self.scale = np.float32(1.0 / (1.0 - probability))
        self.rng = np.random.default_rng()

    def darknet_lwhc(self):
        return 0, 0, 0

    def describe(self):
        return f"dropout       p = {self.probability:.2f}               {self.inputs:4d}  ->  {self.inputs:4d}"

    def forward(self, x, net):
        # Darknet's dropout works in place on its input buffer; at inference it is that buffer.
        if net.train:
            xp = xp_of(x)
            self.rand = xp.asarray(self.rng.random(x.shape, np.float32))
            x *= xp.where(self.rand < self.probability, np.float32(0), self.scale)
        self.output = x
        return x

    def backward(self, x, dx, net):
        """Darknet's dropout shares its delta with the layer before: everything in it is masked and scaled."""
        if dx is not None:
            dx += self.delta.reshape(dx.shape)
            dx *= xp_of(dx).where(self.rand.reshape(dx.shape) < self.probability, np.float32(0), self.scale)
