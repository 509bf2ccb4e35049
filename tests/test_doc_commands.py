"""Every `keras-ssd ...` command shown in README.md and docs/ parses with the
real argument parser (so a renamed or removed option cannot stay in the docs),
and every Python block of the docs at least compiles."""

import pathlib
import re
import shlex

import pytest

from keras_ssd.cli import build_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
_FENCE = re.compile(r"^```(\w*)\s*$")


def _blocks(path):
    """`(language, first line number, text)` of each fenced block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, lang, start, body = [], None, 0, []
    for i, line in enumerate(lines, 1):
        m = _FENCE.match(line.strip())
        if m and lang is None:
            lang, start, body = m.group(1) or "", i + 1, []
        elif line.strip() == "```" and lang is not None:
            blocks.append((lang, start, "\n".join(body)))
            lang = None
        elif lang is not None:
            body.append(line)
    return blocks


#: Shell syntax that ends the command's own words (redirections, pipes, ...).
_SHELL = re.compile(r"^(\d?>.*|<.*|\||\|\||&|&&|;)$")


def _own_words(words):
    for i, word in enumerate(words):
        if _SHELL.match(word):
            return words[:i]
    return words


def _commands():
    """`(where, argv)` of each keras-ssd command in a shell block."""
    found = []
    for path in DOCS:
        for lang, start, text in _blocks(path):
            if lang not in ("bash", "sh", "shell", "console", ""):
                continue
            joined, first = [], None
            for offset, line in enumerate(text.splitlines()):
                if first is None:
                    first = start + offset
                joined.append(line.rstrip()[:-1] if line.rstrip().endswith("\\") else line)
                if line.rstrip().endswith("\\"):
                    continue
                command = " ".join(joined).strip()
                joined, where = [], f"{path.relative_to(ROOT)}:{first}"
                first = None
                command = command[2:] if command.startswith("$ ") else command
                try:
                    words = shlex.split(command, comments=True)
                except ValueError:
                    continue
                for i, word in enumerate(words):
                    if word == "keras-ssd":
                        found.append((where, _own_words(words[i + 1:])))
                        break
                    if word == "python" and words[i + 1:i + 3] == ["-m", "keras_ssd"]:
                        found.append((where, _own_words(words[i + 3:])))
                        break
                    if "=" not in word:  # only VAR=value prefixes before the command
                        break
    return found


COMMANDS = _commands()


def test_docs_show_commands_of_every_subcommand():
    shown = {argv[0] for _, argv in COMMANDS if argv and not argv[0].startswith("-")}
    assert {"train", "evaluate", "predict", "export", "anchors", "demo", "convert"} <= shown


@pytest.mark.parametrize("where,argv", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_doc_command_parses(where, argv, capsys):
    parser = build_parser()
    if "--help" in argv or "-h" in argv or "--version" in argv:
        pytest.skip("help and version print and exit")
    if "..." in argv:
        pytest.skip("an abbreviated command (`...` stands for options shown elsewhere)")
    try:
        parser.parse_args(argv)
    except SystemExit:
        err = capsys.readouterr().err.strip().splitlines()
        pytest.fail(f"{where}: `keras-ssd {' '.join(argv)}` does not parse: "
                    f"{err[-1] if err else ''}")


PYTHON_BLOCKS = [(f"{p.relative_to(ROOT)}:{start}", text)
                 for p in DOCS for lang, start, text in _blocks(p) if lang == "python"]


@pytest.mark.parametrize("where,text", PYTHON_BLOCKS, ids=[w for w, _ in PYTHON_BLOCKS])
def test_doc_python_block_compiles(where, text):
    if text.lstrip().startswith(">>>"):
        pytest.skip("doctest-style transcript")
    try:
        compile(text, where, "exec")
    except SyntaxError as e:
        pytest.fail(f"{where}: {e}")
