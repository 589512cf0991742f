"""What a user types wrong on the command line (issue 25, items 3 and 4): a flag the command does not read stops it
with exit 2 and the flag it may have meant; every verb has its own --help; a family without a verb lists its verbs;
files in the wrong order name the argument that was expected."""
import os

import pytest

from conftest import REPO, run_cli
from pydarknet.cli import COMMANDS, FAMILIES, listing, main
from pydarknet.cli.args import UnknownVerb, file_kind, unknown_flag_note, unknown_flags

DATA, CFG = REPO / "cfg" / "shapes.data", REPO / "cfg" / "yolov3-tiny-shapes.cfg"
WEIGHTS, IMAGE = REPO / "weights" / "yolov3-tiny-shapes.weights", REPO / "data" / "shapes-sample.png"

# every verb of every command, with the words its usage line starts with
VERBS = [("detect", "CFG WEIGHTS"), ("partial", "CFG WEIGHTS OUT N"), ("randweights", "CFG OUT"),
         ("export", "CFG WEIGHTS OUT.onnx"), ("detector test", "DATA CFG WEIGHTS [IMG]"),
         ("detector train", "DATA CFG [WEIGHTS]"), ("detector valid", "DATA CFG WEIGHTS"),
         ("detector recall", "DATA CFG WEIGHTS"), ("detector map", "DATA CFG WEIGHTS"),
         ("detector demo", "DATA CFG WEIGHTS [VIDEO]"), ("detector calc_anchors", "DATA -width W -height H"),
         ("dataset shapes", "OUTDIR"), ("dataset shapes-cls", "OUTDIR"), ("dataset from-voc", "VOCDEVKIT OUTDIR"),
         ("dataset from-coco", "INSTANCES.json IMAGEDIR OUTDIR"), ("dataset check", "DATA [CFG]"),
         ("yolo train", "CFG [WEIGHTS]"), ("yolo test", "CFG WEIGHTS [IMG]"), ("yolo valid", "CFG WEIGHTS"),
         ("classifier train", "DATA CFG [WEIGHTS]"), ("classifier valid", "DATA CFG WEIGHTS"),
         ("classifier predict", "DATA CFG WEIGHTS [IMG]"), ("classifier label", "DATA CFG WEIGHTS"),
         ("tune", "DATA CFG [WEIGHTS]")]
TRAINING_FLAGS = ("-clear", "-max_batches", "-workers", "-chart")     # and -seed, which other verbs read too


def test_every_verb_is_in_the_table():
    """VERBS covers each command and each family's verbs (a new verb must come with its help test)."""
    covered = {words for words, _ in VERBS}
    for name, command in COMMANDS.items():
        if name not in FAMILIES:
            assert name in covered
            continue
        with pytest.raises(UnknownVerb) as listed:
            listing(name, command)
        assert {f"{name} {verb}" for verb in listed.value.verbs} <= covered


@pytest.mark.parametrize("flag, meant", [("--thresh", "-thresh"), ("-treshold", "-thresh")])
def test_unknown_flag_stops_the_command_with_the_flag_it_meant(tmp_path, flag, meant):
    """Darknet ignores a flag it does not read and runs on the defaults (0.5 here); pydarknet stops before it
    runs, with exit 2 and one line."""
    result = run_cli("detector", "test", DATA, CFG, WEIGHTS, IMAGE, flag, ".3", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"pydarknet: unknown flag '{flag}' (did you mean {meant}?)\n"
    assert result.stdout == "" and os.listdir(tmp_path) == []


def test_each_unknown_flag_has_its_line(tmp_path):
    result = run_cli("dataset", "shapes", tmp_path / "out", "-bogus", "1", "-Seed", "3", "--thread", "2",
                     cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "pydarknet: unknown flag '-bogus' (pydarknet dataset shapes --help lists its flags)",
        "pydarknet: unknown flag '-Seed' (did you mean -seed?)",
        "pydarknet: unknown flag '--thread' (did you mean -threads?)"]
    assert not (tmp_path / "out").exists()


def test_a_flag_of_another_verb_is_named_as_such(capsys):
    """-thresh is detector test's and map's, not valid's: not 'did you mean -threads?'."""
    assert main(["detector", "valid", str(DATA), str(CFG), str(WEIGHTS), "-thresh", ".3"]) == 2
    assert capsys.readouterr().err == ("pydarknet: unknown flag '-thresh' (pydarknet detector valid does not read "
                                       "-thresh; --help lists what it reads)\n")


@pytest.mark.parametrize("words, unknown", [
    (["test", "d", "c", "w", "-thresh", "-0.5", "-hier", "-1"], []),         # values of flags it reads
    (["test", "d", "c", "w", "-out", "-odd-name", "-1e-3", "-.5"], []),        # a value that looks like a flag; numbers
    (["test", "d", "c", "w", "-", "-threads", "2", "-nogpu", "-gpus", "0"], []),   # '-' alone; the global flags
    (["test", "d", "c", "w", "-save_labels", "-thresh"], []),                # a value missing: the command's error
    (["test", "d", "c", "w", "-map", "-clear", "--ext_output"], ["-map", "-clear", "--ext_output"]),
    (["train", "d", "c", "-map", "-thresh", ".3"], ["-thresh"]),
])
def test_unknown_flags_are_the_flag_words_the_command_does_not_read(words, unknown):
    probe, _ = listing("detector", COMMANDS["detector"], words[0])
    assert unknown_flags(words, probe) == unknown


def test_suggestions_prefer_the_commands_own_flags():
    probe, _ = listing("detector", COMMANDS["detector"], "test")
    assert unknown_flag_note("-tresh", probe, "detector test") == "unknown flag '-tresh' (did you mean -thresh?)"
    assert unknown_flag_note("-ext-output", probe, "detector test").endswith("(did you mean -ext_output?)")
    assert unknown_flag_note("-bogus", probe, "detector test").endswith(
        "(pydarknet detector test --help lists its flags)")


def test_alexeyabs_flags_stay_reported_and_ignored(capsys):
    """-benchmark and -mjpeg_port 8090 are dropped with their note before the flags are checked: only the usage
    error of the missing files remains."""
    assert main(["detector", "test", "-benchmark", "-mjpeg_port", "8090"]) == 2
    err = capsys.readouterr().err
    assert "ignoring -benchmark: not supported" in err and "ignoring -mjpeg_port 8090: not supported" in err
    assert "unknown flag" not in err and "usage: pydarknet detector test DATA CFG WEIGHTS" in err


@pytest.mark.parametrize("words, usage", VERBS)
def test_every_verb_has_its_own_help(tmp_path, words, usage):
    result = run_cli(*words.split(), "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: pydarknet {words} {usage}"), result.stdout
    flags = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  -")}
    trains = words.endswith(" train")
    assert all((flag in flags) == trains for flag in TRAINING_FLAGS), result.stdout
    assert ("-t" in flags) == (words == "classifier predict")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("word", ["-h", "-help"])
def test_h_asks_for_help_where_the_command_reads_no_h(capsys, word):
    assert main(["detector", "test", str(DATA), word]) == 0
    assert capsys.readouterr().out.startswith("usage: pydarknet detector test DATA CFG WEIGHTS")


@pytest.mark.parametrize("family, verbs", [
    ("detector", ["test", "train", "valid", "recall", "map", "demo", "calc_anchors"]),
    ("classifier", ["train", "valid", "predict", "label"]), ("yolo", ["train", "test", "valid"]),
    ("dataset", ["shapes", "shapes-cls", "from-voc", "from-coco", "check"])])
def test_a_family_without_its_verb_lists_the_verbs(tmp_path, family, verbs):
    """Bare `pydarknet detector`: its verbs, one usage line each, exit 2; with --help the same on stdout, exit 0
    (it used to say `unknown detector command 'None'`)."""
    bare = run_cli(family, cwd=tmp_path)
    assert bare.returncode == 2 and "None" not in bare.stderr
    assert bare.stderr.startswith(f"pydarknet: usage: pydarknet {family} VERB ...")
    listed = [line.split()[2] for line in bare.stderr.splitlines()[1:]]
    assert listed == verbs
    helped = run_cli(family, "--help", cwd=tmp_path)
    assert helped.returncode == 0 and helped.stdout == bare.stderr[len("pydarknet: "):]
    wrong = run_cli(family, "frob", cwd=tmp_path)
    assert wrong.returncode == 2 and wrong.stderr.startswith(f"pydarknet: unknown {family} command 'frob'; the verbs:")


def test_yolo_help_is_yolos_own():
    """yolo's verbs are detector's on cfg/voc.data: their usage names no DATA, and says yolo."""
    out = run_cli("yolo", "train", "--help", cwd=REPO).stdout
    assert out.startswith("usage: pydarknet yolo train CFG [WEIGHTS]") and "detector" not in out


@pytest.mark.parametrize("word", ["--help", "-h", "-help", "help"])
def test_program_help_exits_0(tmp_path, word):
    result = run_cli(word, cwd=tmp_path)
    assert result.returncode == 0 and "pydarknet detector test DATA CFG WEIGHTS" in result.stdout


def write_inputs(folder):
    """A cfg whose [net] is on line 8 (comments first), a .data file, a binary file."""
    (folder / "net.cfg").write_text("# a tiny net\n\n# made for this test\n;\n\n\n\n[net]\nwidth=32\n")
    (folder / "my.data").write_text("# five shapes\nclasses=5\nnames=shapes.names\n")
    (folder / "my.weights").write_bytes(bytes(20) + b"\x01" * 100)


def test_file_kind_reads_the_first_line_that_says(tmp_path):
    write_inputs(tmp_path)
    (tmp_path / "shapes.names").write_text("circle\nsquare\n")
    assert file_kind(tmp_path / "net.cfg") == ("cfg", "[net] on line 8")
    assert file_kind(tmp_path / "my.data") == ("data", "classes=5 on line 2")
    assert file_kind(tmp_path / "my.weights")[0] == "binary"
    assert file_kind(tmp_path / "shapes.names") is None and file_kind(tmp_path / "missing") is None
    (tmp_path / "no-net.cfg").write_text("batch=1\nwidth=32\n[convolutional]\nfilters=8\n")     # still a cfg
    assert file_kind(tmp_path / "no-net.cfg") == ("cfg", "[convolutional] on line 3")
    assert file_kind(IMAGE) == ("binary", "an image")


@pytest.mark.parametrize("words, expected", [
    (["detector", "test", "net.cfg", "my.data", "my.weights", "img.png"],
     "expected a .data file first, got a cfg (net.cfg: [net] on line 8)"),
    (["detector", "test", "net.cfg", "my.weights", "img.png"],                   # DATA left out
     "expected a .data file first, got a cfg (net.cfg: [net] on line 8)"),
    (["detector", "train", "my.data", "my.weights", "net.cfg"],
     "expected a .cfg file second, got a binary file (my.weights: a .weights file?)"),
    (["detector", "map", "my.data", "net.cfg", "my.data"],
     "expected a .weights file third, got a .data file (my.data: classes=5 on line 2)"),
    (["detect", "my.data", "net.cfg", "my.weights"],
     "expected a .cfg file first, got a .data file (my.data: classes=5 on line 2)"),
    (["yolo", "test", "my.data", "my.weights"],
     "expected a .cfg file first, got a .data file (my.data: classes=5 on line 2)"),
    (["classifier", "predict", "net.cfg", "my.data", "my.weights"],
     "expected a .data file first, got a cfg (net.cfg: [net] on line 8)"),
    (["dataset", "check", "net.cfg"], "expected a .data file first, got a cfg (net.cfg: [net] on line 8)"),
    (["export", "net.cfg", "net.cfg", "out.onnx"],
     "expected a .weights file second, got a cfg (net.cfg: [net] on line 8)"),
])
def test_wrong_argument_order_names_the_argument_expected(tmp_path, words, expected):
    write_inputs(tmp_path)
    result = run_cli(*words, cwd=tmp_path)
    assert result.returncode == 2
    command = " ".join(words[:2] if words[0] in ("detector", "yolo", "classifier", "dataset") else words[:1])
    assert result.stderr.startswith(f"pydarknet: {expected}; usage: pydarknet {command} "), result.stderr
    assert result.stderr.count("\n") == 1 and sorted(os.listdir(tmp_path)) == ["my.data", "my.weights", "net.cfg"]
