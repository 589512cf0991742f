"""[shortcut]: add an earlier layer's output (residual connection), then an activation."""
from ..backend import ops_of
from .base import Layer, activation_code
from .route import resolve_index


class Shortcut(Layer):
    type = "shortcut"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        text = s.str("from")
        if text is None:
            raise s.error("shortcut needs from=", "from")
        source = resolve_index(s, "from", text, len(net.layers))
        (_, h1, w1), (_, h2, w2) = net.layers[source].out_shape, in_shape
        stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)     # shortcut_cpu steps both ways by the widths' ratio
        if (min(h1, h2) - 1) * sample >= h2 or (min(h1, h2) - 1) * stride >= h1:
            raise s.error(f"layer {source} outputs {w1}x{h1}, the layer before {w2}x{h2}: shortcut steps through "
                          f"both by the ratio of their widths, which runs outside the heights", "from")
        return cls(in_shape, source, net.layers[source].out_shape, activation_code(s, "linear"),
                   s.float("alpha", 1.0), s.float("beta", 1.0))

    def __init__(self, in_shape, source, source_shape, activation, alpha, beta):
        super().__init__(in_shape)
        self.source, self.source_shape = source, tuple(source_shape)
        self.activation, self.alpha, self.beta = activation, alpha, beta

    def darknet_lwhc(self):
        c, h, w = self.source_shape
        return w, h, c

    def describe(self):
        c2, h2, w2 = self.source_shape
        c, h, w = self.out_shape
        return f"res  {self.source:3d}                {w2:4d} x{h2:4d} x{c2:4d}   ->  {w:4d} x{h:4d} x{c:4d}"

    def forward(self, x, net):
        return ops_of(x).shortcut_forward(x, net.layers[self.source].output, self.alpha, self.beta, self.activation,
                                          self.new_output(x.shape[0]))

    def backward(self, x, dx, net):
        ops = ops_of(x)
        ops.gradient(self.output, self.activation, self.delta)
        source = net.layers[self.source]
        source_delta = source.delta.reshape((x.shape[0],) + source.out_shape)
        if dx is None:
            dx = ops.xp.zeros_like(x)
        ops.shortcut_backward(self.delta, self.alpha, self.beta, dx, source_delta)
