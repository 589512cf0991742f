"""The `detector` verbs, a module each, as Darknet's examples/detector.c holds them: pipeline.py (image -> boxes,
and the `Detector` API), test.py (`detector test`, `detect`), train.py, valid.py (valid, recall), map.py, demo.py,
anchors.py (calc_anchors)."""
