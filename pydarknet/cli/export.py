"""`pydarknet export CFG WEIGHTS OUT.onnx [-batch N] [-decode]`: its words (export.py writes the graph)."""
from ..errors import UsageError
from .args import check_order


def export(args):
    batch = args.value("-batch", 1, int)
    decode = args.flag("-decode")
    usage = "usage: pydarknet export CFG WEIGHTS OUT.onnx [-batch N] [-decode]"
    check_order(args.argv, ("cfg", "weights"), usage)
    if len(args.argv) < 3:
        raise UsageError(usage)
    from ..export import export
    return export(args.argv[0], args.argv[1], args.argv[2], batch, decode)
