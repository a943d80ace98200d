"""`vaekit report` and `vaekit serve`: looking at a run, as a file to share or in the browser."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vaekit.errors import ConfigError


def add_view_parsers(sub: Any, positive_int: Any) -> None:
    p = sub.add_parser(
        "report", help="one self-contained HTML page about a run (curves, KL, pictures, "
        "evaluation, quality, config)",
        description="Write one HTML file about RUN with its images embedded and no network "
        "fetch: it opens from a file:// address and can be shared as it is. It shows the "
        "latest `vaekit evaluate` and `vaekit quality` reports where the run has them.")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("-o", "--output", required=True, help="the HTML file to write; never one of "
                   "the run's own files")
    p.add_argument("--force", action="store_true", help="replace an existing -o file "
                   "(atomically); without it an existing file is refused")


def cmd_report(args: argparse.Namespace) -> int:
    from vaekit.io import atomic_write_text, claim_output
    from vaekit.report import build_report
    from vaekit.run import read_run_info

    run = Path(args.run)
    read_run_info(run)  # a clear error for a directory that is not a run
    if Path(args.output).suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"-o {args.output}: the file name must end in .html")
    claim_output(args.output, reads=[p for p in run.iterdir() if p.is_file()],
                 force=args.force)
    page = build_report(run)
    atomic_write_text(Path(args.output), page)
    print(f"wrote {args.output} ({len(page) / 1024:.0f} KB, self-contained)")
    return 0
