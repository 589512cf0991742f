"""`detector test` and `detect`: Darknet's test_detector over one image or the images typed at its prompt; prints
the objects, draws them into predictions.jpg (or OUT.jpg), and with `-out NAME.json` writes AlexeyAB's JSON."""
import json
import sys
import warnings

import numpy as np

from .. import files
from ..cfg import read_data, read_names
from ..data.check import warn_classes_mismatch
from .pipeline import class_count, detect_image
from ..network import load_network
from ..weights import WeightsWarning
from ..errors import DarknetError
from ..draw import draw_detections
from ..image import image_paths, load_image_color, save_image


def print_detections(lines, ext_output, img_w, img_h):
    for name, prob, left, top, right, bottom in lines:
        if ext_output:
            print(f"{name}: {prob * 100:.0f}%\t(left_x: {left:4.0f}   top_y: {top:4.0f}   width: {right - left:4.0f}   "
                  f"height: {bottom - top:4.0f})")
        else:
            print(f"{name}: {prob * 100:.0f}%")


def json_record(frame_id, filename, dets, names, thresh):
    """One image of AlexeyAB's -out JSON: every class above thresh of every detection, relative boxes."""
    objects = []
    for det in dets:
        x, y, w, h = (float(v) for v in det.bbox)
        for k, p in enumerate(det.prob):
            if p > thresh:
                objects.append({"class_id": k, "name": names[k] if k < len(names) else str(k),
                                "relative_coordinates": {"center_x": x, "center_y": y, "width": w, "height": h},
                                "confidence": float(p)})
    return {"frame_id": frame_id, "filename": filename, "objects": objects}


def write_json(path, records):
    with files.replacing(path) as tmp, open(tmp, "w") as f:
        json.dump(records, f, indent=1)
    print(f"Saved {len(records)} image records to {path}", file=sys.stderr)


def label_lines(dets, thresh):
    """AlexeyAB's -save_labels lines: per detection its best class above thresh, `%d %2.4f %2.4f %2.4f %2.4f` of
    the relative box. Our departure: the box is first clipped to the image (a box cut to nothing is left out), so
    that `dataset check` and `detector train` take the file as it is."""
    lines = []
    for det in dets:
        prob = np.where(det.prob > thresh, det.prob, 0)
        if not prob.any():
            continue
        x, y, w, h = (float(v) for v in det.bbox)
        left, right = max(x - w / 2, 0.0), min(x + w / 2, 1.0)
        top, bottom = max(y - h / 2, 0.0), min(y + h / 2, 1.0)
        if right > left and bottom > top:
            lines.append(f"{int(np.argmax(prob))} {(left + right) / 2:2.4f} {(top + bottom) / 2:2.4f} "
                         f"{right - left:2.4f} {bottom - top:2.4f}")
    return lines


def detect_images(datacfg, cfgfile, weightfile, filename, thresh, hier_thresh, outfile, ext_output=False,
                  save_labels=False):
    """Darknet's test_detector: predict, print the objects, draw them into predictions.jpg (or OUT.jpg); with
    `save_labels` (AlexeyAB's -save_labels) also a label file per image, where data.label_path points.

    Without `filename` it reads image paths from standard input; an image that does not load is then reported and
    skipped. Returns the exit code: 1 when an image typed failed to load and no JSON record was written, else 0.
    """
    data = read_data(datacfg)
    names = read_names(data.file_of("names", "data/names.list"))
    with warnings.catch_warnings(record=True) as weight_warnings:      # shown now, and again after the detections
        warnings.simplefilter("always", WeightsWarning)
        net = load_network(cfgfile, weightfile, verbose=True)
    for caught in weight_warnings:
        warnings.showwarning(caught.message, caught.category, caught.filename, caught.lineno)
    net.one_pass = filename is not None
    warn_classes_mismatch(data, cfgfile)
    classes = class_count(net)
    if len(names) < classes:
        raise DarknetError(f"{datacfg}: names file has {len(names)} names, the network detects {classes} classes")
    json_out = outfile if outfile and outfile.endswith(".json") else None
    records = []
    failures = 0
    for frame_id, path in enumerate(image_paths(filename, prompt=json_out is None), 1):
        try:
            im = load_image_color(path)
        except DarknetError as e:
            if filename:
                raise
            print(f"pydarknet: {e}", file=sys.stderr)
            failures += 1
            continue
        dets, seconds = detect_image(net, im, thresh, hier_thresh, nms=.45)
        print(f"{path}: Predicted in {seconds:f} seconds.")
        lines = draw_detections(im, dets, thresh, names, classes)
        print_detections(lines, ext_output, im.shape[2], im.shape[1])
        if json_out:
            records.append(json_record(frame_id, path, dets, names, thresh))
        if save_labels:
            from ..data.labels import label_path  # only -save_labels needs the label rule
            labels = label_path(path)
            if labels == path:
                raise DarknetError(f"{path}: -save_labels needs an image extension label_path knows "
                                   f"(.jpg, .png, .jpeg, .bmp)")
            files.write_lines(labels, label_lines(dets, thresh))
            print(f"Saved {labels}", file=sys.stderr)
        written = save_image(im, outfile if outfile and not json_out else "predictions")
        print(f"Saved {written}", file=sys.stderr)
    if json_out:
        write_json(json_out, records)
    for caught in weight_warnings:      # a truncated file's warning would be buried under the detections
        warnings.showwarning(caught.message, caught.category, caught.filename, caught.lineno)
    return 1 if failures and not records and not filename else 0
