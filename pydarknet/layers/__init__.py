"""The registry: cfg section name -> layer class. Aliases live here and nowhere else."""
from .avgpool import Avgpool
from .batchnorm import Batchnorm
from .connected import Connected
from .convolutional import Convolutional
from .cost import Cost
from .crop import Crop
from .detection import Detection
from .dropout import Dropout
from .local import Local
from .logistic import Logistic
from .maxpool import Maxpool
from .region import Region
from .reorg import Reorg
from .route import Route
from .shortcut import Shortcut
from .softmax import Softmax
from .upsample import Upsample
from .yolo import Yolo

LAYERS = {
    "convolutional": Convolutional, "conv": Convolutional,
    "maxpool": Maxpool, "max": Maxpool,
    "avgpool": Avgpool, "avg": Avgpool,
    "route": Route,
    "shortcut": Shortcut,
    "upsample": Upsample,
    "reorg": Reorg,
    "connected": Connected, "conn": Connected,
    "local": Local,
    "dropout": Dropout,
    "softmax": Softmax, "soft": Softmax,
    "cost": Cost,
    "logistic": Logistic,
    "crop": Crop,
    "batchnorm": Batchnorm,
    "yolo": Yolo,
    "region": Region,
    "detection": Detection,
}

# Section types Darknet knows that pydarknet does not build (yet): named so the error can say so.
DARKNET_ONLY = {"deconvolutional", "deconv", "activation", "l2norm", "crnn", "gru", "lstm", "rnn",
                "normalization", "lrn"}
