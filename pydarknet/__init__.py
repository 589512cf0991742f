"""pydarknet: Darknet's YOLO v1-v3, in Python."""
__version__ = "0.1.0"
