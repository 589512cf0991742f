"""Where commands write (issue 25, item 8): the README's transfer-learning example trains into a backup folder of its
own, not `make demo`'s; what commands write in the working folder, as Darknet's do, is listed in the README and
covered by the repository's .gitignore."""
import os
import re
import shlex

from pydarknet.cfg import read_data
from pydarknet.data.check import BAD_LABEL_LIST, BAD_LIST
from tests.conftest import REPO, run_cli

README = (REPO / "README.md").read_text()


def commands_after(marker):
    """The `pydarknet ...` commands (as argument lists, comments dropped) of the first ```sh block after `marker`."""
    block = README[README.index(marker):].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True)[1:] for line in lines if line.startswith("pydarknet ")]


def section(title):
    return README.split(f"### {title}\n", 1)[1].split("\n#", 1)[0]


def test_the_transfer_example_trains_into_a_backup_folder_of_its_own(tmp_path):
    """The example's commands, run as written (fewer images): its detector's backups go elsewhere than those of
    `make demo` (examples/shapes_demo.py: OUT/shapes/, its .data's backup=) and of cfg/shapes.data."""
    commands = commands_after("Transfer learning, on the embedded data")
    train = [c for c in commands if c[:2] == ["detector", "train"]]
    assert len(train) == 1
    data = train[0][2]
    if data.startswith("cfg/"):
        backup = read_data(REPO / data)["backup"]
    else:       # a dataset the example writes first, with its own .data
        writes = [c for c in commands if c[:2] == ["dataset", "shapes"] and data == f"{c[2]}/shapes.data"]
        assert writes, f"nothing in the example writes {data}"
        result = run_cli(*writes[0], "-n", "8", "-size", "64", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        backup = os.path.relpath(read_data(tmp_path / data)["backup"], tmp_path)
    demo_backup = os.path.join("out", "shapes", "backup")      # make demo: examples/shapes_demo.py out
    assert "os.path.join(out, \"shapes\")" in (REPO / "examples" / "shapes_demo.py").read_text()
    assert os.path.normpath(read_data(REPO / "cfg" / "shapes.data")["backup"]) == demo_backup
    assert os.path.normpath(backup) != demo_backup
    # what it trains from and charts also stay out of the working folder and of make demo's
    assert all(os.path.dirname(path) == os.path.dirname(backup) for path in [train[0][4], *train[0][6:7]])


def test_what_commands_write_in_the_working_folder_is_listed_and_ignored():
    listed = set(re.findall(r"`([\w.]+/?)`", section("Where files go")))
    names = {"predictions.jpg", "chart.png", "chart.json", "metrics.jsonl", "gradients.png", "tensorboard/",
             "mlflow.db", "mlartifacts/", "results/", BAD_LIST, BAD_LABEL_LIST, "anchors.txt", "counters_per_class.txt",
             "cloud.png", "tune/"}
    assert names <= listed, names - listed
    # /tune/: at the top only, where the package's own pydarknet/tune/ is not
    ignored = {line.removeprefix("/") for line in (REPO / ".gitignore").read_text().splitlines()}
    assert names <= ignored, names - ignored
