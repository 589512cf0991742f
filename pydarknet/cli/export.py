"""`pydarknet export CFG WEIGHTS OUT.onnx [-batch N] [-decode]`: its words (export.py writes the graph)."""
from ..errors import UsageError


def export(args):
    batch = args.value("-batch", 1, int)
    decode = args.flag("-decode")
    if len(args.argv) < 3:
        raise UsageError("usage: pydarknet export CFG WEIGHTS OUT.onnx [-batch N] [-decode]")
    from ..export import export
    return export(args.argv[0], args.argv[1], args.argv[2], batch, decode)
