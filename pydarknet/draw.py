"""Darknet's image.c, its drawing: boxes, labels and the palette, as `detector test` draws its predictions.

Images are image.py's float32 (c, h, w) RGB arrays in [0, 1]; drawing changes them in place, as Darknet's
`void` draw functions do.
"""
import cv2
import numpy as np

from .image import F32, ONE


# image.c: `float colors[6][3]`, the palette get_color interpolates.
COLORS = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 1, 0], [1, 1, 0], [1, 0, 0]], dtype=np.float32)


def get_color(c, x, max):
    """get_color: channel c (0 blue, 1 green, 2 red in Darknet's calls) of colour x of max, in float32."""
    ratio = (F32(x) / F32(max)) * F32(5)
    i = int(np.floor(ratio))
    j = int(np.ceil(ratio))
    ratio = ratio - F32(i)
    return float((ONE - ratio) * COLORS[i][c] + ratio * COLORS[j][c])


def draw_box(im, x1, y1, x2, y2, r, g, b):
    """draw_box: a one-pixel rectangle outline, corners clamped into the image, in place."""
    h, w = im.shape[1:]
    x1, x2 = min(max(x1, 0), w - 1), min(max(x2, 0), w - 1)
    y1, y2 = min(max(y1, 0), h - 1), min(max(y2, 0), h - 1)
    colour = np.array([r, g, b], dtype=np.float32)[:, None]
    if x1 <= x2:                                        # C's `for(i = x1; i <= x2; ++i)`
        im[:3, y1, x1:x2 + 1] = colour
        im[:3, y2, x1:x2 + 1] = colour
    if y1 <= y2:
        im[:3, y1:y2 + 1, x1] = colour
        im[:3, y1:y2 + 1, x2] = colour


def draw_box_width(im, x1, y1, x2, y2, width, r, g, b):
    """draw_box_width: `width` nested draw_box outlines, each one pixel further in."""
    for i in range(width):
        draw_box(im, x1 + i, y1 + i, x2 - i, y2 - i, r, g, b)


def _label_image(text, size):
    """get_label's stand-in: black text on white with a border of a quarter of its height, as float (h, w) in [0, 1].

    OpenCV's Hershey font replaces Darknet's data/labels alphabet images; `size` is the
    height in pixels Darknet asks for (im.h * .03).
    """
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(size / 22.0, 0.3)                       # Hershey simplex caps are ~22 px at scale 1
    thickness = max(1, int(round(scale * 1.5)))
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    border = int((th + base) * .25)
    canvas = np.full((th + base + 2 * border, tw + 2 * border), 255, dtype=np.uint8)
    cv2.putText(canvas, text, (border, border + th), font, scale, 0, thickness, cv2.LINE_AA)
    return canvas.astype(np.float32) / F32(255)


def draw_label(im, r, c, label, rgb):
    """draw_label: put the label above row r (inside the box when there is no room), tinted rgb * label."""
    h, w = label.shape
    if r - h >= 0:
        r = r - h
    rows = min(h, im.shape[1] - r)
    cols = min(w, im.shape[2] - c)
    if rows > 0 and cols > 0:
        tint = np.asarray(rgb, dtype=np.float32)[:, None, None]
        im[:3, r:r + rows, c:c + cols] = tint * label[None, :rows, :cols]


def box_edges(bbox, w, h):
    """draw_detections' pixel box: truncation toward zero in double, then the four one-sided clamps."""
    x, y, bw, bh = (float(F32(v)) for v in bbox)        # a C `box` holds floats; `/2.` is double
    left = int((x - bw / 2.) * w)
    right = int((x + bw / 2.) * w)
    top = int((y - bh / 2.) * h)
    bot = int((y + bh / 2.) * h)
    return max(left, 0), max(top, 0), min(right, w - 1), min(bot, h - 1)


def bbox_tuple(bbox):
    if all(hasattr(bbox, a) for a in "xywh"):
        return bbox.x, bbox.y, bbox.w, bbox.h
    return tuple(bbox)


def draw_detections(im, dets, thresh, names, classes):
    """draw_detections: box and label for every detection with some class prob > thresh, in place.

    Follows image.c: all classes above thresh go into one label joined by ", ", the first
    such class picks the colour (offset = class*123457 % classes), the box is im.h * .006
    pixels wide (so 0, no box, below 167 rows, as in Darknet). Each detection needs .bbox
    (x, y, w, h: centre and size relative to the image; a sequence or an object with
    .x/.y/.w/.h) and .prob (per class). Returns one (name, prob, left, top, right, bottom)
    line per class drawn, the lines Darknet prints.
    """
    h, w = im.shape[1:]
    lines = []
    for det in dets:
        prob = det.prob
        hits = [j for j in range(classes) if prob[j] > thresh]
        if not hits:
            continue
        cls = hits[0]
        width = int(h * .006)
        offset = cls * 123457 % classes
        rgb = (get_color(2, offset, classes), get_color(1, offset, classes), get_color(0, offset, classes))
        left, top, right, bot = box_edges(bbox_tuple(det.bbox), w, h)
        draw_box_width(im, left, top, right, bot, width, *rgb)
        label = _label_image(", ".join(names[j] for j in hits), h * .03)
        draw_label(im, top + width, left, label, rgb)
        lines.extend((names[j], float(prob[j]), left, top, right, bot) for j in hits)
    return lines
