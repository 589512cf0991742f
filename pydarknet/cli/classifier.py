"""`pydarknet classifier train|valid|predict|label`: their words, as run_classifier reads them (classifier.py runs
them). Each verb reads its own flags: the training flags on train, -t on predict."""
from ..errors import UsageError
from .args import check_order, training_flags, verb_of

USAGES = {"train": "DATA CFG [WEIGHTS] [-clear] [-seed S] [-max_batches N] [-workers N] [-chart FILE] "
                   "[-sync allreduce|darknet] [-map_every K] [-grad_stats N] [-tracker tensorboard|mlflow]   "
                   "(-map_every: the validation loss and top-1 on the valid list every K iterations; -tracker: "
                   "metrics.jsonl's numbers to TensorBoard or MLflow too)",
          "valid": "DATA CFG WEIGHTS",
          "predict": "DATA CFG WEIGHTS [IMG] [-t K]",
          "label": "DATA CFG WEIGHTS"}


def classifier(args):
    verb = verb_of(args, "classifier", USAGES)
    top = args.value("-t", 0, int) if verb == "predict" else 0
    flags = training_flags(args) if verb == "train" else {}
    if verb != "train":
        args.flag("-dont_show")         # accepted for AlexeyAB's scripts, as training_flags does
    usage = f"usage: pydarknet classifier {verb} {USAGES[verb]}"
    words = args.argv[1:]
    check_order(words, ("data", "cfg", "weights"), usage)
    if len(words) < (2 if verb == "train" else 3):
        raise UsageError(usage)
    data, cfg, weights = words[0], words[1], args.positional(3)
    from .. import classifier
    if verb == "train":
        classifier.train_classifier(data, cfg, weights, **flags)
        return 0
    if verb == "valid":
        classifier.validate_classifier(data, cfg, weights)
        return 0
    if verb == "predict":
        return classifier.predict_classifier(data, cfg, weights, args.positional(4), top)
    return classifier.label_classifier(data, cfg, weights)
