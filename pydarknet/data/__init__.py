"""Darknet's data.c in parts (labels.py, augment.py, loader.py), and the dataset tools and generators: check.py
(`dataset check`), voc.py and coco.py (`dataset from-voc`, `from-coco`), shapes.py and shapes_cls.py (the embedded
datasets)."""
