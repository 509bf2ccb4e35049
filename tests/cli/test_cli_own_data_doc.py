"""docs/own_data.md's commands stay valid: every `keras-ssd` line parses with
today's options (the walkthrough itself was run end to end on its practice set)."""

import os
import re
import shlex

import pytest

from keras_ssd.cli import build_parser

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "own_data.md")


def _commands():
    text = open(DOC, encoding="utf-8").read()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines += [line for line in block.replace("\\\n", " ").splitlines()
                  if line.startswith("keras-ssd ")]
    return lines


def test_the_walkthrough_shows_every_step():
    steps = {shlex.split(line)[1] for line in _commands()}
    assert steps == {"anchors", "train", "evaluate", "predict"}
    formats = {f for line in _commands() for f in re.findall(r"--format (\w+)", line)}
    assert formats == {"yolo", "csv"}


@pytest.mark.parametrize("line", _commands())
def test_every_walkthrough_command_parses(line):
    args = build_parser().parse_args(shlex.split(line)[1:])
    assert args.command == shlex.split(line)[1]
