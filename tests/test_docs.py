"""The documentation is tested: README.md and every page under docs/.

- Every ```python block runs, each in a fresh process in its own temporary directory.
- Every `vaekit ...` command in a ```bash block is parsed by the real CLI parser, so a renamed
  or removed flag fails here instead of in a reader's shell.
- The site builds with `mkdocs build --strict` (no broken link, anchor or API reference), and
  the README's links into docs/ land on pages and anchors that exist.

The collector is our own, some 60 lines, rather than mktestdocs, pytest-markdown-docs or Sybil:
it needs per-block directives that those tools lack or spell differently (shortening a
block's training, a skip with a visible reason), a fresh process per block (a block that
registers a likelihood must not leak it into the rest of the suite), and the bash side,
which none of them does: splitting `&&` chains, line continuations, comments and environment
prefixes, then handing each command to `vaekit.cli.build_parser()`. It adds no dependency.

A block's directives are a comment on its first line, visible to readers:

    # docs-test: epochs=1            every keyword argument `epochs=...` becomes epochs=1
    # docs-test: skip needs MNIST    the block is skipped, with that reason
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DIRECTIVE = re.compile(r"^\s*#\s*docs-test:\s*(.*)$")


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(lang: str) -> list[Block]:
    """The fenced blocks of `lang` in every documentation file (fences at the line's start)."""
    found = []
    for path in DOC_FILES:
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            m = re.match(r"^(```+|~~~+)\s*([\w+-]*)", lines[i])
            if not m:
                i += 1
                continue
            fence, start = m[1], i
            i += 1
            body = []
            while i < len(lines) and not lines[i].startswith(fence):
                body.append(lines[i])
                i += 1
            i += 1
            if m[2] == lang:
                found.append(Block(path, start + 1, lang, "\n".join(body) + "\n"))
    return found


# --- Python blocks ---------------------------------------------------------------------------

def prepare(block: Block) -> str:
    """The block's code with its directives applied; skips the test if a directive says so."""
    code = block.code
    for line in code.splitlines():
        m = DIRECTIVE.match(line)
        if not m:
            continue
        text = m[1].strip()
        if text.startswith("skip"):
            pytest.skip(f"{block.id}: {text[4:].strip() or 'marked skip'}")
        for setting in filter(None, (s.strip() for s in text.split(","))):
            name, _, value = setting.partition("=")
            if not value:
                raise ValueError(f"{block.id}: bad docs-test directive {setting!r}")
            pattern = rf"\b{re.escape(name.strip())}=(\d+(\.\d+)?|\"[^\"]*\"|'[^']*')"
            code, n = re.subn(pattern, f"{name.strip()}={value.strip()}", code)
            if not n:
                raise ValueError(f"{block.id}: the directive {setting!r} changes nothing")
    return code


PYTHON_BLOCKS = blocks("python")


def test_python_blocks_are_found() -> None:
    assert len(PYTHON_BLOCKS) >= 4, [b.id for b in PYTHON_BLOCKS]


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.id)
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    code = prepare(block)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VAEKIT_NO_DOWNLOAD": "1",
           "VAEKIT_CACHE": str(tmp_path / "cache"), "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    prelude = "import torch\ntorch.set_num_threads(1)\n"
    done = subprocess.run([sys.executable, "-c", prelude + code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{block.id} failed:\n{code}\n{done.stderr[-3000:]}"


# --- vaekit commands in bash blocks ------------------------------------------------------------

SEPARATORS = {"&&", "||", ";", "|", "&"}
ENV_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def vaekit_commands(script: str) -> list[list[str]]:
    """The argument lists of every vaekit invocation in a bash script: `vaekit ARGS`,
    `python -m vaekit ARGS` and `torchrun ... -m vaekit ARGS`, after line continuations,
    comments, `&&`/`;`/`|` chains and `VAR=value` prefixes."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        segment: list[str] = []
        for token in [*lexer, ";"]:
            if token not in SEPARATORS:
                segment.append(token)
                continue
            while segment and ENV_PREFIX.match(segment[0]):
                segment.pop(0)
            if segment and segment[0] == "vaekit":
                commands.append(segment[1:])
            elif "-m" in segment and segment.index("-m") + 1 < len(segment) \
                    and segment[segment.index("-m") + 1] == "vaekit":
                commands.append(segment[segment.index("-m") + 2:])
            segment = []
    return commands


COMMANDS = [(f"{b.id}#{i}", args) for b in blocks("bash")
            for i, args in enumerate(vaekit_commands(b.code))]


def test_the_splitter() -> None:
    script = ("A=1 B=2 vaekit train --epochs 3 && vaekit evaluate RUN  # a comment\n"
              "torchrun --nproc_per_node 4 -m vaekit train \\\n  --out runs/ddp\n"
              "python -m vaekit info RUN; echo done | cat\n")
    assert vaekit_commands(script) == [["train", "--epochs", "3"], ["evaluate", "RUN"],
                                       ["train", "--out", "runs/ddp"], ["info", "RUN"]]


def test_commands_are_found() -> None:
    names = {args[0] for _, args in COMMANDS if args}
    assert {"train", "evaluate", "sample", "fit-prior", "serve"} <= names, names


@pytest.mark.parametrize("where,args", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_command_parses(where: str, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from vaekit.cli import build_parser

    try:
        build_parser().parse_args(args)
    except SystemExit as exit:
        if exit.code not in (0, None):
            pytest.fail(f"{where}: `vaekit {shlex.join(args)}` does not parse:\n"
                        f"{capsys.readouterr().err}")


def test_a_renamed_flag_fails() -> None:
    from vaekit.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--epoch-count", "3"])


# --- the site ------------------------------------------------------------------------------

README_LINK = re.compile(r"\]\((docs/[^)#\s]+)(#[^)\s]+)?\)")


def test_readme_links_name_existing_files() -> None:
    links = README_LINK.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    assert links
    for target, _ in links:
        assert (ROOT / target).exists(), target


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """The whole site, API and CLI references included, builds with no warning; the README's
    anchors into it exist (GitHub and MkDocs make the same slugs of these headings)."""
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason=f"{module} is not installed: pip install -e '.[docs]'")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                           "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    cli = (site / "cli" / "index.html").read_text(encoding="utf-8")
    assert "usage: vaekit train" in cli and "usage: vaekit fit-prior" in cli
    for target, anchor in README_LINK.findall((ROOT / "README.md").read_text(encoding="utf-8")):
        page = site / Path(target).relative_to("docs").with_suffix("") / "index.html"
        if target == "docs/index.md":
            page = site / "index.html"
        assert page.exists(), target
        if anchor:
            assert f'id="{anchor[1:]}"' in page.read_text(encoding="utf-8"), target + anchor
