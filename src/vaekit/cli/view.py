"""`vaekit report` and `vaekit serve`: looking at a run, as a file to share or in the browser."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vaekit.errors import ConfigError


def add_view_parsers(sub: Any, positive_int: Any) -> None:
    add_report_parser(sub)
    add_serve_parser(sub, positive_int)


def add_report_parser(sub: Any) -> None:
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
    from vaekit.run import read_run_info
    from vaekit.views.report import build_report

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


def add_serve_parser(sub: Any, positive_int: Any) -> None:
    p = sub.add_parser(
        "serve", help="a local latent explorer in the browser: sliders, interpolation, uploads, "
        "samples",
        description="Load RUN's model once and serve a page to explore it: drag latent "
        "sliders and watch the decoded image, interpolate between held-out examples or "
        "uploads, upload an image (or a row of numbers) to see its reconstruction, posterior "
        "and anomaly score, and draw samples at a temperature. JSON endpoints /api/decode, "
        "/api/encode, /api/sample, /api/interpolate (see docs/views.md). Needs the serve extra.")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, "
                   "this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--data-dir", help="directory of the run's IDX files (default: the run's)")
    p.add_argument("--max-upload-mb", type=float, default=2.0, help="largest request body, in "
                   "MB (default: 2)")


def cmd_serve(args: argparse.Namespace) -> int:
    from vaekit.run import read_run_info
    from vaekit.views.serve.app import serve

    read_run_info(args.run)  # a clear error for a directory that is not a run
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    if not args.max_upload_mb > 0:
        raise ConfigError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    serve(args.run, host=args.host, port=args.port, data_dir=args.data_dir,
          max_body=int(args.max_upload_mb * 1024 * 1024))
    return 0
