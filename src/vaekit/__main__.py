from vaekit.cli import entry

raise SystemExit(entry())
