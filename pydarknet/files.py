"""Files written whole or not at all: a temp name in the same folder, then a rename (nothing half-written is ever
left where a reader looks, even after an error or Ctrl-C)."""
import contextlib
import os


@contextlib.contextmanager
def replacing(path):
    """A temp name beside `path` (its folder made if missing) to write to; renamed to `path` when the block ends
    without an error, removed when it raises."""
    path = os.fsdecode(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    """Write `text` to `path` atomically."""
    with replacing(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_lines(path, lines):
    """write_text of one line each, each ended by a newline."""
    write_text(path, "".join(f"{line}\n" for line in lines))
