"""bench/RESULTS.md: each benchmark owns one "## " section and rewrites only that one."""
import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
RESULTS = os.path.join(ROOT, "bench", "RESULTS.md")
TITLE = "# pydarknet benchmarks\n\n"


def split_sections(text):
    """(preamble, [(heading, body), ...]) split at lines that start with "## ", outside code fences."""
    preamble, sections, fence = [], [], False
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        if not fence and line.startswith("## "):
            sections.append([line.rstrip("\n"), [line]])
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    return "".join(preamble), [(heading, "".join(body)) for heading, body in sections]


def read(path):
    with open(path) as f:
        return f.read()


def write_section(section, path=RESULTS, first=False):
    """Replace the section whose heading is section's first line (or add it, first or last), keeping the rest;
    written atomically."""
    heading = section.splitlines()[0].strip()
    text = read(path) if os.path.exists(path) else TITLE
    preamble, sections = split_sections(text)
    if not preamble.strip():
        preamble = TITLE
    if not preamble.endswith("\n\n"):
        preamble = preamble.rstrip("\n") + "\n\n"
    mine = [h.strip() == heading for h, _ in sections]
    bodies = [body for _, body in sections]
    if any(mine):
        bodies = [section if m else body for body, m in zip(bodies, mine)]
    else:
        bodies = [section] + bodies if first else bodies + [section]
    bodies = [body.rstrip("\n") + "\n" for body in bodies]
    temp = f"{path}.tmp"
    with open(temp, "w") as f:
        f.write(preamble + "\n".join(bodies))
    os.replace(temp, path)
