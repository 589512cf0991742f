"""`pydarknet classifier train|valid|predict|label`: their words, as run_classifier reads them (classifier.py runs
them)."""
from ..errors import UsageError
from .args import training_flags


def classifier(args):
    verb = args.positional(0)
    top = args.value("-t", 0, int)
    flags = training_flags(args)
    usage = "usage: pydarknet classifier train|valid|predict|label DATA CFG [WEIGHTS] [IMG] [-t K]"
    if verb not in ("train", "valid", "predict", "label") or len(args.argv) < 3:
        raise UsageError(usage)
    data, cfg, weights = args.argv[1], args.argv[2], args.positional(3)
    from .. import classifier
    if verb == "train":
        classifier.train_classifier(data, cfg, weights, **flags)
        return 0
    if weights is None:
        raise UsageError(f"usage: pydarknet classifier {verb} DATA CFG WEIGHTS")
    if verb == "valid":
        classifier.validate_classifier(data, cfg, weights)
        return 0
    if verb == "predict":
        return classifier.predict_classifier(data, cfg, weights, args.positional(4), top)
    return classifier.label_classifier(data, cfg, weights)
