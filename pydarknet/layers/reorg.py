"""[reorg]: space-to-depth by stride (reverse=1 for depth-to-space), with Darknet's own index arithmetic;
flatten=1 instead transposes each image from channels-first to channels-last (reverse=1: back), as Darknet's
flatten() does."""
from ..backend import ops_of
from .base import Layer, positive


class Reorg(Layer):
    type = "reorg"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        stride = positive(s, "stride", s.int("stride", 1))
        reverse = s.int("reverse", 0)
        flatten = s.int("flatten", 0)
        c, h, w = in_shape
        if s.int("extra", 0):
            raise s.error("reorg extra is not supported", "extra")
        if c % (stride * stride):       # either way, Darknet's reorg_cpu divides the channels by stride^2
            raise s.error(f"reorg needs channels ({c}) divisible by stride^2 ({stride * stride})", "stride")
        if not reverse and (h % stride or w % stride):
            raise s.error(f"reorg needs width and height ({w}x{h}) divisible by stride {stride}", "stride")
        return cls(in_shape, stride, reverse, flatten)

    def __init__(self, in_shape, stride, reverse, flatten=0):
        super().__init__(in_shape)
        c, h, w = self.in_shape
        self.stride, self.reverse, self.flatten = stride, reverse, flatten
        # Darknet sizes the output by stride even when flatten=1, which only transposes
        if reverse:
            self.out_shape = (c // (stride * stride), h * stride, w * stride)
        else:
            self.out_shape = (c * stride * stride, h // stride, w // stride)

    def describe(self):
        c, h, w = self.in_shape
        oc, oh, ow = self.out_shape
        mark = "x" if self.reverse else "/"
        return f"reorg              {mark}{self.stride:2d}  {w:4d} x{h:4d} x{c:4d}   ->  {ow:4d} x{oh:4d} x{oc:4d}"

    def forward(self, x, net):
        y = self.new_output(x.shape[0])
        if self.flatten:
            return _transpose(x, y, self.in_shape, to_channels_last=not self.reverse)
        return ops_of(x).reorg_forward(x, self.stride, self.reverse, y)

    def backward(self, x, dx, net):
        if dx is None:
            return
        if self.flatten:        # the transpose back, written over dx as Darknet's memcpy + flatten
            _transpose(self.delta, dx, self.in_shape, to_channels_last=bool(self.reverse))
        else:
            ops_of(x).reorg_backward(self.delta, self.stride, self.reverse, dx)


def _transpose(source, target, in_shape, to_channels_last):
    """Darknet's flatten(x, w*h, c, batch, forward), with the layer's input sizes: per image, [c][h*w] -> [h*w][c]
    when forward, else back."""
    batch, (c, h, w) = source.shape[0], in_shape
    rows, cols = (c, h * w) if to_channels_last else (h * w, c)
    target.reshape(batch, cols, rows)[...] = source.reshape(batch, rows, cols).transpose(0, 2, 1)
    return target
