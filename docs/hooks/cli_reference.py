"""MkDocs hook: the command-line reference, rendered from vaekit's own argparse parser.

A page holding the marker `<!-- cli-reference -->` gets, in its place, one section per
subcommand with the text of `vaekit COMMAND --help`. The parser object is used directly
(`vaekit.cli.build_parser`), so the flags are described once, in the code; if the parser
cannot be built here, each command's help is taken from `python -m vaekit COMMAND --help`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

MARKER = "<!-- cli-reference -->"
WIDTH = "100"  # argparse wraps help at $COLUMNS: fixed, so the page does not depend on a terminal


def on_config(config: Any) -> Any:
    # This checkout's source first, so that the reference describes the code beside it.
    src = Path(config["config_file_path"]).parent / "src"
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    return config


def _helps_from_parser() -> dict[str, str]:
    from vaekit.cli import build_parser

    parser = build_parser()
    helps = {"": parser.format_help()}
    for action in parser._actions:  # argparse keeps subcommands in its _SubParsersAction
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                helps[name] = sub.format_help()
    return helps


def _helps_from_subprocess(src: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    def run(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "vaekit", *args, "--help"], env=env,
                              capture_output=True, text=True, check=True).stdout

    top = run()
    names = top.split("{", 1)[1].split("}", 1)[0].split(",")  # usage: vaekit [-h] {train,...}
    return {"": top, **{name: run(name) for name in names}}


def render(src: Path) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        try:
            helps = _helps_from_parser()
        except Exception:  # any failure to import or build it: ask the program itself
            helps = _helps_from_subprocess(src)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    parts = ["## vaekit\n", "```text", helps.pop("").rstrip(), "```\n"]
    for name, text in helps.items():
        parts += [f"## vaekit {name}\n", "```text", text.rstrip(), "```\n"]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    src = Path(config["config_file_path"]).parent / "src"
    return markdown.replace(MARKER, render(src))
