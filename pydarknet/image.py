"""Darknet's image.c: load, resize, letterbox, crop, colour jitter, place and save (drawing: draw.py).

An image is a float32 numpy array of shape (c, h, w), RGB, values in [0, 1]: the memory
order of Darknet's `image` struct. Every operation reproduces Darknet's float32 arithmetic,
so results match the original bit for bit (or to a few ulp where Darknet's `-Ofast` build
reorders a sum). Functions that return an `image` in Darknet return a new array here;
Darknet's in-place `void` functions (fill, constrain, flip, embed, place) change
their argument in place. The colour transforms, in place in Darknet, return a new array
unless given `out=` (pass `out=im` for Darknet's in-place behaviour).
"""
import math
import os
import sys

import cv2
import numpy as np

from .errors import ImageError
from .jit import image_kernel

# error_model="numpy": float division by zero gives inf/NaN as in C instead of raising.


F32 = np.float32


ONE = F32(1)


# Suffixes save_image writes as given; anything else gets ".jpg" appended, as Darknet does.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def make_image(w, h, c):
    """make_image: a zeroed (c, h, w) float32 image (calloc)."""
    return np.zeros((c, h, w), dtype=np.float32)


def fill_image(im, s):
    """fill_image: set every value to s, in place."""
    im[...] = F32(s)


def constrain_image(im):
    """constrain_image: clip to [0, 1] in place; NaN stays NaN, as in C's two comparisons."""
    np.clip(im, F32(0), ONE, out=im)


def image_from_array(array):
    """ipl_to_image + rgbgr_image: an HxWx3 uint8 BGR array (what cv2 gives) to a (3, h, w) RGB image.

    A grey (HxW) or BGRA (HxWx4) array is turned into 3 channels first, as stb_image does
    when Darknet asks it for 3 channels. Pixel = float32(u8) / 255 in float32, which equals
    Darknet's `(float)data[i]/255.` for every u8.
    """
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ImageError(f"image array must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_BGRA2BGR)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"image array must be HxWx3 BGR, got shape {array.shape}")
    rgb = array[:, :, ::-1].transpose(2, 0, 1)
    return np.ascontiguousarray(rgb, dtype=np.float32) / F32(255)


def load_image_color(path, w=0, h=0):
    """load_image_color: read a file as 3-channel RGB; resize to w x h when both are non-zero and differ.

    The file is decoded from bytes (np.fromfile + cv2.imdecode) so that any path works and a
    failure can be reported with its cause. EXIF orientation is ignored, as stb_image does.
    """
    path = os.fsdecode(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise ImageError(f"cannot read image {path!r}: {e.strerror or e}") from None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if bgr is None:
        raise ImageError(f"cannot read image {path!r}: not an image OpenCV can decode")
    im = image_from_array(bgr)
    if w and h and (h != im.shape[1] or w != im.shape[2]):
        im = resize_image(im, w, h)
    return im


load_image = load_image_color


@image_kernel
def _resize_kernel(x, part, y):
    # Darknet's two passes: horizontal into `part` (w x im.h), then vertical into `y`.
    # Every operand is float32, as in C, so numba computes C's float arithmetic.
    nc, ih, iw = x.shape
    h, w = y.shape[1], y.shape[2]
    w_scale = np.float32(iw - 1) / np.float32(w - 1)
    h_scale = np.float32(ih - 1) / np.float32(h - 1)
    one = np.float32(1)
    # each column's source pixel and weight, the same for every row, worked out once; the last column (or a
    # one-pixel-wide image) takes x[iw - 1] alone, as C does, and is written after the loop
    inner = w - 1 if iw > 1 else 0
    left = np.empty(w, np.int64)
    weight = np.empty(w, np.float32)
    for c in range(inner):
        sx = np.float32(c) * w_scale
        left[c] = int(sx)
        weight[c] = sx - np.float32(left[c])
    for k in range(nc):
        for r in range(ih):
            source, out = x[k, r], part[k, r]
            for c in range(inner):
                dx = weight[c]
                out[c] = (one - dx) * source[left[c]] + dx * source[left[c] + 1]
            for c in range(inner, w):
                out[c] = source[iw - 1]
    for k in range(nc):
        for r in range(h):
            if h == 1:
                # C computes 0 * inf = NaN here and reads out of bounds; take row 0 instead.
                sy = np.float32(0)
            else:
                sy = np.float32(r) * h_scale
            iy = int(sy)
            dy = sy - np.float32(iy)
            for c in range(w):
                y[k, r, c] = (one - dy) * part[k, iy, c]
            if r == h - 1 or ih == 1:
                continue
            for c in range(w):
                y[k, r, c] += dy * part[k, iy + 1, c]


def resize_image(im, w, h):
    """resize_image: Darknet's two-pass bilinear resize (corners aligned), in float32."""
    if w < 1 or h < 1:
        raise ValueError(f"resize_image: size must be positive, got {w}x{h}")
    x = np.ascontiguousarray(im, dtype=np.float32)
    part = np.empty((x.shape[0], x.shape[1], w), dtype=np.float32)
    y = np.empty((x.shape[0], h, w), dtype=np.float32)
    _resize_kernel(x, part, y)
    return y


@image_kernel
def _place_kernel(x, w, h, dx, dy, canvas):
    # place_image + bilinear_interpolate: sample im at (x/w*im.w, y/h*im.h); neighbours
    # outside im read 0 (get_pixel_extend); pixels outside the canvas are dropped (set_pixel).
    nc, ih, iw = x.shape
    ch, cw = canvas.shape[1], canvas.shape[2]
    one = np.float32(1)
    for k in range(min(nc, canvas.shape[0])):
        for j in range(h):
            if j + dy < 0 or j + dy >= ch:
                continue
            # C writes ((float)y / h) * im.h; -Ofast hoists im.h / h out of the loop, and the
            # goldens match y * (im.h / h) bit for bit, so that is the order used here.
            ry = np.float32(j) * (np.float32(ih) / np.float32(h))
            iy = int(np.floor(ry))
            fy = ry - np.float32(iy)
            for i in range(w):
                if i + dx < 0 or i + dx >= cw:
                    continue
                rx = np.float32(i) * (np.float32(iw) / np.float32(w))
                ix = int(np.floor(rx))
                fx = rx - np.float32(ix)
                p00 = x[k, iy, ix] if 0 <= iy < ih and 0 <= ix < iw else np.float32(0)
                p01 = x[k, iy + 1, ix] if 0 <= iy + 1 < ih and 0 <= ix < iw else np.float32(0)
                p10 = x[k, iy, ix + 1] if 0 <= iy < ih and 0 <= ix + 1 < iw else np.float32(0)
                p11 = x[k, iy + 1, ix + 1] if 0 <= iy + 1 < ih and 0 <= ix + 1 < iw else np.float32(0)
                # image.c's sum, left to right, with the first product grouped as (1-dy)*((1-dx)*p00):
                # that is how the -Ofast build that made the goldens evaluates it (bit-exact on them).
                canvas[k, j + dy, i + dx] = ((one - fy) * ((one - fx) * p00) + fy * (one - fx) * p01
                                             + (one - fy) * fx * p10 + fy * fx * p11)


def place_image(im, w, h, dx, dy, canvas):
    """place_image: draw im scaled to w x h at (dx, dy) into canvas, in place (bilinear_interpolate sampling)."""
    if canvas.dtype != np.float32:
        raise TypeError("place_image: canvas must be float32")
    _place_kernel(np.ascontiguousarray(im, dtype=np.float32), w, h, dx, dy, canvas)


def embed_image(source, dest, dx, dy):
    """embed_image: copy source into dest at (dx, dy), in place; what falls outside dest is dropped."""
    c = min(source.shape[0], dest.shape[0])
    sh, sw = source.shape[1:]
    dh, dw = dest.shape[1:]
    y0, x0 = max(0, -dy), max(0, -dx)                   # first source row/col that lands in dest
    y1, x1 = min(sh, dh - dy), min(sw, dw - dx)         # one past the last
    if y0 < y1 and x0 < x1:
        dest[:c, y0 + dy:y1 + dy, x0 + dx:x1 + dx] = source[:c, y0:y1, x0:x1]


def letterbox_image(im, w, h):
    """letterbox_image: resize keeping the aspect ratio, centred on a w x h canvas of 0.5."""
    ih, iw = im.shape[1:]
    # The comparison is float32 in C; the new sizes are integer divisions.
    if F32(w) / F32(iw) < F32(h) / F32(ih):
        new_w, new_h = w, (ih * w) // iw
    else:
        new_w, new_h = (iw * h) // ih, h
    resized = resize_image(im, new_w, new_h)
    boxed = make_image(w, h, im.shape[0])
    fill_image(boxed, .5)
    embed_image(resized, boxed, (w - new_w) // 2, (h - new_h) // 2)
    return boxed


def crop_image(im, dx, dy, w, h):
    """crop_image: the w x h window at (dx, dy).

    Darknet clamps out-of-range coordinates to the border (constrain_int), so pixels
    outside the image repeat the edge pixel; they are not zero.
    """
    rows = np.clip(np.arange(h) + dy, 0, im.shape[1] - 1)
    cols = np.clip(np.arange(w) + dx, 0, im.shape[2] - 1)
    return np.ascontiguousarray(im[:, rows[:, None], cols[None, :]], dtype=np.float32)


@image_kernel
def _rotate_crop_kernel(x, rad, s, dx, dy, aspect, y):
    # rotate_crop_image: each output pixel samples the input at the rotated, scaled, shifted point, bilinear with
    # 0 outside (get_pixel_extend). C computes cos/sin and the (x - w/2.) terms in double, stored into floats.
    nc, ih, iw = x.shape
    h, w = y.shape[1], y.shape[2]
    cx, cy = np.float32(iw / 2.), np.float32(ih / 2.)
    cos_r, sin_r = math.cos(np.float64(rad)), math.sin(np.float64(rad))
    one = np.float32(1)
    for k in range(nc):
        for j in range(h):
            for i in range(w):
                u = (i - w / 2.) / s * aspect + dx / s * aspect
                v = (j - h / 2.) / s + dy / s
                rx = np.float32(cos_r * u - sin_r * v + cx)
                ry = np.float32(sin_r * u + cos_r * v + cy)
                ix, iy = int(np.floor(rx)), int(np.floor(ry))
                fx, fy = rx - np.float32(ix), ry - np.float32(iy)
                p00 = x[k, iy, ix] if 0 <= iy < ih and 0 <= ix < iw else np.float32(0)
                p01 = x[k, iy + 1, ix] if 0 <= iy + 1 < ih and 0 <= ix < iw else np.float32(0)
                p10 = x[k, iy, ix + 1] if 0 <= iy < ih and 0 <= ix + 1 < iw else np.float32(0)
                p11 = x[k, iy + 1, ix + 1] if 0 <= iy + 1 < ih and 0 <= ix + 1 < iw else np.float32(0)
                y[k, j, i] = ((one - fy) * (one - fx) * p00 + fy * (one - fx) * p01 + (one - fy) * fx * p10
                              + fy * fx * p11)


def rotate_crop_image(im, rad, s, w, h, dx, dy, aspect):
    """rotate_crop_image: the w x h view of im rotated by rad around its centre, scaled by s (x stretched by
    aspect), shifted by (dx, dy): the classifier's random crop."""
    y = np.empty((im.shape[0], h, w), np.float32)
    _rotate_crop_kernel(np.ascontiguousarray(im, dtype=np.float32), F32(rad), F32(s), F32(dx), F32(dy),
                        F32(aspect), y)
    return y


def center_crop_image(im, w, h):
    """center_crop_image: the centred square of the image's shorter side, resized to w x h."""
    m = min(im.shape[1], im.shape[2])
    return resize_image(crop_image(im, (im.shape[2] - m) // 2, (im.shape[1] - m) // 2, m, m), w, h)


def resize_min(im, size):
    """resize_min: the image resized so that its shorter side is `size` (itself when it already is)."""
    h, w = im.shape[1:]
    if w < h:
        h, w = (h * size) // w, size
    else:
        w, h = (w * size) // h, size
    return im if (w, h) == (im.shape[2], im.shape[1]) else resize_image(im, w, h)


def flip_image(im):
    """flip_image: mirror left-right, in place."""
    im[...] = im[:, :, ::-1]      # numpy copies first when source and target overlap


@image_kernel
def _rgb_to_hsv_kernel(x, y):
    # Darknet's rgb_to_hsv. A grey pixel that is not black has delta == 0, so h = 0/0 = NaN,
    # exactly as in C; its s is 0, so hsv_to_rgb never reads that NaN.
    zero = np.float32(0)
    for j in range(x.shape[1]):
        for i in range(x.shape[2]):
            r, g, b = x[0, j, i], x[1, j, i], x[2, j, i]
            mx = (r if r > b else b) if r > g else (g if g > b else b)    # three_way_max
            mn = (r if r < b else b) if r < g else (g if g < b else b)    # three_way_min
            delta = mx - mn
            v = mx
            if mx == zero:
                s = zero
                h = zero
            else:
                s = delta / mx
                if r == mx:
                    h = (g - b) / delta
                elif g == mx:
                    h = np.float32(2) + (b - r) / delta
                else:
                    h = np.float32(4) + (r - g) / delta
                if h < zero:
                    h += np.float32(6)
                h = np.float32(np.float64(h) / 6.0)    # C's `h/6.` divides in double
            y[0, j, i] = h
            y[1, j, i] = s
            y[2, j, i] = v


@image_kernel
def _hsv_to_rgb_kernel(x, y):
    one = np.float32(1)
    for j in range(x.shape[1]):
        for i in range(x.shape[2]):
            h = np.float32(6) * x[0, j, i]
            s = x[1, j, i]
            v = x[2, j, i]
            if s == np.float32(0):
                r = g = b = v
            else:
                # (int)floor(NaN) is INT_MIN on x86: the `else` branch below.
                index = int(np.floor(h)) if h == h else -2147483648
                f = h - np.float32(index)
                p = v * (one - s)
                q = v * (one - s * f)
                t = v * (one - s * (one - f))
                if index == 0:
                    r, g, b = v, t, p
                elif index == 1:
                    r, g, b = q, v, p
                elif index == 2:
                    r, g, b = p, v, t
                elif index == 3:
                    r, g, b = p, q, v
                elif index == 4:
                    r, g, b = t, p, v
                else:
                    r, g, b = v, p, q
            y[0, j, i] = r
            y[1, j, i] = g
            y[2, j, i] = b


def _colour_out(im, out):
    if im.ndim != 3 or im.shape[0] != 3:
        raise ValueError(f"expected a 3-channel (3, h, w) image, got shape {im.shape}")
    if out is None:
        out = np.empty(im.shape, dtype=np.float32)
    return np.ascontiguousarray(im, dtype=np.float32), out


def rgb_to_hsv(im, out=None):
    """rgb_to_hsv: channels become (h in [0, 1), s, v); NaN hue where Darknet divides 0 by 0.

    Divisions here are IEEE, as the C source says. The goldens' -Ofast build vectorises this
    loop and divides with rcpps plus one Newton step, which is up to 2 ulp off and depends
    on the CPU model, so h and s can differ from those goldens in the last bit or two.
    """
    x, out = _colour_out(im, out)
    _rgb_to_hsv_kernel(x, out)
    return out


def hsv_to_rgb(im, out=None):
    """hsv_to_rgb: the inverse of rgb_to_hsv, Darknet's six-sector formula."""
    x, out = _colour_out(im, out)
    _hsv_to_rgb_kernel(x, out)
    return out


def distort_hsv(hsv, hue, sat, val):
    """The middle of distort_image, in place on an HSV image: S *= sat, V *= val, H += hue wrapped once into [0, 1].

    H may end at exactly 1.0, which hsv_to_rgb (as in Darknet) maps through its last
    branch with f = 0: that is Darknet's colour for it, not red.
    """
    hsv[1] *= F32(sat)                                  # scale_image_channel: float32 products
    hsv[2] *= F32(val)
    h = hsv[0] + F32(hue)
    h = np.where(h > 1, h - ONE, h)                     # the two ifs, in Darknet's order
    hsv[0] = np.where(h < 0, h + ONE, h)


def distort_image(im, hue, sat, val, out=None):
    """distort_image: rgb_to_hsv, distort_hsv, hsv_to_rgb, then clip to [0, 1] (constrain_image)."""
    hsv = rgb_to_hsv(im)
    distort_hsv(hsv, hue, sat, val)
    out = hsv_to_rgb(hsv, out=out)
    constrain_image(out)
    return out


def to_bgr_uint8(im):
    """save_image's pixel rule: clip to [0, 1], then (unsigned char)(255*val) (truncation), as HxWxC BGR."""
    x = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0)
    x = np.clip(x, F32(0), ONE) * F32(255)
    u8 = x.astype(np.uint8).transpose(1, 2, 0)
    if u8.shape[2] == 3:
        u8 = u8[:, :, ::-1]
    return np.ascontiguousarray(u8)


def save_image(im, path):
    """save_image: write PNG/JPEG (JPEG quality 80, as Darknet); no image suffix means ".jpg" is appended.

    Returns the path written.
    """
    path = os.fsdecode(path)
    if os.path.splitext(path)[1].lower() not in IMAGE_SUFFIXES:
        path += ".jpg"
    ext = os.path.splitext(path)[1].lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, 80] if ext in (".jpg", ".jpeg") else []
    try:
        ok, encoded = cv2.imencode(ext, to_bgr_uint8(im), params)
    except cv2.error as e:
        raise ImageError(f"cannot encode image {path!r}: {str(e).strip().splitlines()[-1]}") from None
    if not ok:
        raise ImageError(f"cannot encode image {path!r}")
    try:
        encoded.tofile(path)
    except OSError as e:
        raise ImageError(f"cannot write image {path!r}: {e.strerror or e}") from None
    return path


def image_paths(filename, prompt):
    """The image to work on, or Darknet's prompt loop over standard input."""
    if filename:
        yield filename
        return
    while True:
        if prompt:
            print("Enter Image Path: ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return
        line = line.strip()
        if line:
            yield line
