"""`keras-ssd train --help` says how to start N workers, and
docs/distributed.md's launch recipe is the command the multi-worker test runs."""

import os
import re
import shlex
import sys

import pytest

from keras_ssd.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_train_help_explains_launching_workers(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "multi-worker training (--distribute multi-worker):" in out
    for fragment in ('"task": {"type": "worker", "index": i}', "once per worker",
                     "--distribute multi-worker", "--resume", "chief"):
        assert fragment in out, fragment


def _pairs(tokens):
    """Options of a command line as a sorted list of (option, value or None)."""
    pairs, i = [], 0
    while i < len(tokens):
        has_value = i + 1 < len(tokens) and not tokens[i + 1].startswith("--")
        value = tokens[i + 1] if has_value else None
        pairs.append((tokens[i], value))
        i += 1 if value is None else 2
    return sorted(pairs, key=lambda p: (p[0], p[1] or ""))


def test_docs_launch_recipe_is_the_tested_command():
    sys.path.insert(0, os.path.join(ROOT, "tests", "training"))
    try:
        import test_multi_worker as tested
    finally:
        sys.path.pop(0)
    with open(os.path.join(ROOT, "docs", "distributed.md"), encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("### The tested launch recipe"):]
    start = section.index("```bash") + len("```bash")
    block = section[start:section.index("```", start)]
    joined = block.replace("\\\n", " ")
    command = re.search(r"keras-ssd train (.*?)>", joined, re.S).group(1)
    documented = shlex.split(command)
    expected = tested.train_args("shapes", "shared-ckpt", "--distribute", "multi-worker")
    assert expected[1:4] == ["-m", "keras_ssd", "train"]
    assert _pairs(documented) == _pairs(expected[4:])
    assert "TF_CONFIG=" in block and '\\"index\\": $i' in block
