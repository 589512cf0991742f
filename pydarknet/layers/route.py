"""[route]: the outputs of earlier layers, concatenated along channels."""
from ..backend import xp_of
from .base import Layer


def resolve_index(s, key, text, index):
    """Darknet's rule for layer references: negative counts back from this layer; must name an earlier layer."""
    try:
        ref = int(text)
    except ValueError:
        raise s.error(f"'{text}' is not a layer index", key) from None
    if ref < 0:
        ref += index
    if not 0 <= ref < index:
        raise s.error(f"{text} refers to layer {ref}, but only layers 0..{index - 1} come before layer {index}", key)
    return ref


class Route(Layer):
    type = "route"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        text = s.str("layers", "")
        if not text.strip(","):
            raise s.error("route needs layers=", "layers")
        index = len(net.layers)
        refs = [resolve_index(s, "layers", t, index) for t in text.split(",") if t != ""]
        shapes = [net.layers[i].out_shape for i in refs]
        first = shapes[0]
        for i, shape in zip(refs, shapes):
            if shape[1:] != first[1:]:
                raise s.error(f"layer {i} outputs {shape[2]}x{shape[1]}, layer {refs[0]} outputs "
                              f"{first[2]}x{first[1]}: routed layers must have the same size", "layers")
        return cls(in_shape, refs, shapes)

    def __init__(self, in_shape, layers, shapes):
        super().__init__(in_shape)
        self.layers = layers
        self.out_shape = (sum(c for c, _, _ in shapes), shapes[0][1], shapes[0][2])
        self.route_inputs = sum(c * h * w for c, h, w in shapes)

    @property
    def inputs(self):
        return self.route_inputs

    def darknet_lwhc(self):
        return 0, 0, 0

    def describe(self):
        return "route " + "".join(f" {i}" for i in self.layers)

    def forward(self, x, net):
        y = self.new_output(x.shape[0])
        xp = xp_of(x)
        parts = [net.layers[i].output.reshape((x.shape[0],) + net.layers[i].out_shape) for i in self.layers]
        if len(parts) == 1:
            y[...] = parts[0]
        else:
            xp.concatenate(parts, axis=1, out=y)
        return y

    def backward(self, x, dx, net):
        """Darknet's backward_route_layer: each routed layer's slice of delta goes back into that layer's delta."""
        offset = 0
        for i in self.layers:
            source = net.layers[i]
            c = source.out_shape[0]
            source.delta.reshape((x.shape[0],) + source.out_shape)[...] += self.delta[:, offset:offset + c]
            offset += c
