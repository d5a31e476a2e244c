"""Every chapter has an Exercises section, and every command in it names parameters that exist,
with values its chapter accepts (the command would start, not stop at validation)."""

import ast
import json
import re
import shlex

import pytest

from bnlib import book, chapters

RUN = re.compile(r"bnlib run (\w+) (.*)")


def exercises(chapter: str) -> str:
    nb = json.loads((book.NOTEBOOKS / f"{chapter}.ipynb").read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]
    return next((c for c in cells if c.startswith("## Exercises")), "")


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


@pytest.mark.parametrize("chapter", book.toc_chapters())
def test_exercise_commands_are_valid(chapter):
    text = exercises(chapter)
    assert text, f"{chapter} has no '## Exercises' cell"
    commands = [m.groups() for m in RUN.finditer(text)]
    assert commands, f"{chapter}'s exercises give no command to run"
    assert ":::{dropdown} Solution" in text
    for name, rest in commands:
        assert name == chapter
        args = shlex.split(rest.split("#")[0])
        profile = args[args.index("--profile") + 1] if "--profile" in args else "quick"
        params = {args[i + 1]: _value(args[i + 2]) for i, a in enumerate(args) if a == "-p"}
        chapters.resolve(chapter, profile, **params)  # raises on an unknown name or a bad value
