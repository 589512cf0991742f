"""[crop]: a centred crop of the input, rescaled to [-1, 1] (random crop and flip in training)."""
import numpy as np

from .base import Layer, positive


class Crop(Layer):
    type = "crop"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        c, h, w = in_shape
        crop_h = positive(s, "crop_height", s.int("crop_height", 1))
        crop_w = positive(s, "crop_width", s.int("crop_width", 1))
        if crop_h > h or crop_w > w:
            raise s.error(f"crop {crop_w}x{crop_h} is larger than its input {w}x{h}")
        layer = cls(in_shape, crop_h, crop_w, s.int("flip", 0), s.int("noadjust", 0))
        # parse_crop reads these too; only Darknet's GPU forward (a random rotation and HSV jitter of each crop)
        # uses them, its CPU forward_crop_layer does not, and neither does this one
        layer.angle, layer.shift = s.float("angle", 0.0), s.float("shift", 0.0)
        layer.saturation, layer.exposure = s.float("saturation", 1.0), s.float("exposure", 1.0)
        return layer

    def __init__(self, in_shape, crop_height, crop_width, flip, noadjust):
        super().__init__(in_shape)
        self.flip, self.noadjust = flip, noadjust
        self.out_shape = (self.in_shape[0], crop_height, crop_width)
        self.rng = np.random.default_rng()

    def describe(self):
        c, h, w = self.in_shape
        oc, oh, ow = self.out_shape
        return f"Crop Layer: {h} x {w} -> {oh} x {ow} x {oc} image"

    def forward(self, x, net):
        _, h, w = self.in_shape
        _, oh, ow = self.out_shape
        scale, trans = (1, 0) if self.noadjust else (2, -1)
        if net.train:
            flip = bool(self.flip) and bool(self.rng.integers(2))
            dh, dw = int(self.rng.integers(h - oh + 1)), int(self.rng.integers(w - ow + 1))
        else:
            flip, dh, dw = False, (h - oh) // 2, (w - ow) // 2
        crop = x[:, :, dh:dh + oh, dw:dw + ow]
        if flip:
            crop = x[:, :, dh:dh + oh, w - dw - ow:w - dw][..., ::-1]
        y = self.new_output(x.shape[0])
        y[...] = crop * np.float32(scale) + np.float32(trans)
        return y

    def backward(self, x, dx, net):
        """Darknet's backward_crop_layer is empty: nothing flows back through a crop."""
