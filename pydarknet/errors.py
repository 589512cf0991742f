"""One exception family, so the command line can turn any of them into one clear line."""


class DarknetError(Exception):
    """Base of every error pydarknet raises on bad input; its message is one line that names the culprit."""


class CfgError(DarknetError):
    """A .cfg, .data or .names file that cannot be read as Darknet would read it."""


class WeightsError(DarknetError):
    """A .weights file that does not fit the network."""


class ImageError(DarknetError):
    """An image that cannot be read."""


class UsageError(DarknetError):
    """A command line that cannot be run as written (the command line exits 2 and shows the usage)."""
