"""`vaekit report RUN -o report.html`: one self-contained HTML page about a run.

It holds, from the run directory alone: the model and the data in words, the learning curves,
the KL of each latent group over the epochs (a hierarchy) or of each dimension, the sample and
reconstruction grids, the latest `vaekit evaluate` and `vaekit quality` reports (evaluation.json,
quality.json) where they exist, and the whole config. Every image is a PNG embedded as a
data: URI; there is no script, no stylesheet link and no URL, so the file opens the same from
a file:// address, offline, or as an e-mail attachment.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
from pathlib import Path
from typing import Any

from vaekit.errors import RunDirError, VaekitError
from vaekit.run import EVALUATION_FILE, QUALITY_FILE, read_metrics, read_run_info

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: the run directory's pictures, in the order shown, with their captions
PICTURES = (("samples.png", "Samples: means of p(x|z), z ~ p(z)"),
            ("reconstructions.png", "Held-out inputs and their reconstructions"),
            ("kl_per_dim.png", "KL of each latent dimension (held-out data)"),
            ("latent.png", "The 2-D latent space"),
            ("latent_classes.png", "Each categorical variable (a row) decoded at each of its "
                                   "classes, the others at an example's posterior mode"))

#: evaluation.json's rows: (label, key, format)
EVALUATION_ROWS = (("examples", "n", "{:d}"), ("importance samples k", "k", "{:d}"),
                   ("ELBO (nats)", "elbo", "{:.3f}"),
                   ("reconstruction E_q log p(x|z)", "reconstruction", "{:.3f}"),
                   ("KL(q || p)", "kl", "{:.3f}"), ("NLL (nats)", "nll", "{:.3f}"),
                   ("NLL standard error", "nll_stderr", "{:.3f}"),
                   ("bits/dim", "bits_per_dim", "{:.4f}"),
                   ("log p(x) − ELBO", "gap_log_likelihood_minus_elbo", "{:.3f}"),
                   ("active units", "active_units", "{:d}"),
                   ("seconds", "seconds", "{:.1f}"))

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 2em;
  border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 0.15em 0.8em;
  border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0.5em 1.5em 0.5em 0; } figcaption { color: #555;
  font-size: 0.9em; } img { image-rendering: pixelated; max-width: 100%; }
.muted { color: #666; } code { font-size: 0.92em; }
"""


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _group_names(config: Any, event_shape: tuple[int, ...]) -> list[str] | None:
    """The run's latent groups by name (its model, built without weights), or None."""
    from vaekit.models import build_model

    try:
        return build_model(config, event_shape).group_names
    except VaekitError:
        return None


def build_report(run_dir: str | Path) -> str:
    """The HTML page of the run in `run_dir` (see the module's docstring)."""
    from vaekit.models.describe import describe_model
    from vaekit.views import plots

    run = Path(run_dir)
    info = read_run_info(run)
    config = info.config
    history = [row for row in read_metrics(run) if "train_elbo" in row]
    e = html.escape
    parts = [f"<h1>vaekit run <code>{e(run.name)}</code></h1>",
             f"<p>{e(describe_model(config))}, {e(config.likelihood)} likelihood; data "
             f"{e(str(info.data.get('name', config.data)))} of shape {tuple(info.event_shape)}."
             f"</p>", _training_summary(history, config.epochs)]
    parts.append("<h2>Learning curves</h2>")
    if history:
        parts.append(_figure(plots.figure_png(plots.curves_figure(history)),
                             "ELBO, reconstruction and KL per epoch (train, and validation "
                             "where the run holds data out)"))
        groups = plots.kl_groups_figure(history, _group_names(config, info.event_shape))
        if groups is not None:
            parts.append(_figure(plots.figure_png(groups), "KL of each latent group: a group "
                                 "near 0 nats has switched off"))
        elif config.options() is not None:  # a hierarchy
            parts.append("<p class=muted>The KL of each latent group is measured on validation "
                         "data, and this run holds none out (--val-fraction 0); see the "
                         "evaluation below.</p>")
    else:
        parts.append("<p class=muted>No epoch has finished yet.</p>")
    pictures = [_figure(png, caption) for name, caption in PICTURES
                if (png := _read_png(run / name)) is not None]
    parts.append("<h2>Samples and reconstructions</h2>")
    parts.extend(pictures or ["<p class=muted>No pictures in the run directory (they are "
                              "written when training ends).</p>"])
    parts += ["<h2>Evaluation</h2>", _evaluation(run / EVALUATION_FILE),
              "<h2>Sample quality</h2>", _quality(run / QUALITY_FILE),
              "<h2>Data</h2>", _table(info.data.items()),
              "<h2>Config</h2>", _table(_config_rows(config))]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    from vaekit._version import __version__

    parts.append(f"<p class=muted>Written by vaekit {e(__version__)} on {stamp} from "
                 f"{e(str(run))}.</p>")
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<title>vaekit report: {e(run.name)}</title><style>{STYLE}</style></head>"
            "<body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _config_rows(config: Any) -> list[tuple[str, Any]]:
    """The config's fields, less the one-layer fields that the run's model does not read."""
    from vaekit.config import ONE_LAYER_FIELDS
    from vaekit.models import MODELS

    reads = MODELS[config.model].reads
    return [(k, v) for k, v in config.to_dict().items()
            if k not in ONE_LAYER_FIELDS or k in reads]


def _training_summary(history: list[dict[str, Any]], epochs: int) -> str:
    if not history:
        return "<p>Not trained yet.</p>"
    last = history[-1]
    best = next((r for r in history if r["epoch"] == last.get("best_epoch")), last)
    score = best.get("val_elbo", best["train_elbo"])
    which = "validation" if "val_elbo" in best else "training"
    minutes = sum(float(r.get("seconds", 0.0)) for r in history) / 60
    return (f"<p>Trained {len(history)} of {epochs} epochs ({minutes:.1f} minutes of training); "
            f"best {which} ELBO {score:.3f} nats at epoch {best['epoch']}; skipped steps "
            f"{last.get('skipped_steps', 0)}.</p>")


def _read_png(path: Path) -> bytes | None:
    """The bytes of a PNG file of the run, or None (absent, or not a PNG)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.startswith(PNG_SIGNATURE) else None


def _figure(png: bytes, caption: str) -> str:
    return (f"<figure><img src=\"{png_data_uri(png)}\" alt=\"{html.escape(caption)}\">"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(rows: Any) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_plain(v))}</td></tr>"
                    for k, v in rows)
    return f"<table>{cells}</table>"


def _plain(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return "" if value is None else str(value)


def _load_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        raise RunDirError(f"{path} is not valid JSON") from None
    return raw if isinstance(raw, dict) else None


def _evaluation(path: Path) -> str:
    r = _load_json(path)
    if r is None:
        return ("<p class=muted>None saved: run <code>vaekit evaluate RUN</code> to add the "
                "importance-weighted log-likelihood.</p>")
    rows = []
    for label, key, fmt in EVALUATION_ROWS:
        value = r.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            text = fmt.format(int(value) if fmt == "{:d}" else float(value))
            rows.append(f"<tr><th>{html.escape(label)}</th><td class=num>{text}</td></tr>")
    groups = r.get("kl_per_group") or []
    if len(groups) > 1:
        for g, (kl, units) in enumerate(zip(groups, r.get("active_units_per_group", []),
                                            strict=False), start=1):
            rows.append(f"<tr><th>group {g}: KL, active units</th><td class=num>{kl:.3f}, "
                        f"{units}</td></tr>")
    head = (f"<p>{html.escape(str(r.get('data', '?')))} {html.escape(str(r.get('split', '?')))}"
            f": {html.escape(str(r.get('estimate', '')))}.</p>")
    return head + f"<table>{''.join(rows)}</table>"


def _quality(path: Path) -> str:
    r = _load_json(path)
    if r is None:
        return ("<p class=muted>None saved: run <code>vaekit quality RUN</code> to add the "
                "Fréchet distance and precision/recall of samples.</p>")
    if "column_shapes" in r:
        return _table_quality(r)
    floor = r.get("floor", {})
    rows = "".join(
        f"<tr><th>{label}</th><td class=num>{float(r[key]):.4f}</td>"
        f"<td class=num>{float(floor.get(key, float('nan'))):.4f}</td></tr>"
        for label, key in (("Fréchet distance", "fd"), ("precision", "precision"),
                           ("recall", "recall")) if key in r)
    net = r.get("feature_network", {})
    return (f"<p>{r.get('n', '?')} samples ({html.escape(str(r.get('samples', '')))}) against "
            f"{html.escape(str(r.get('data', '?')))} {html.escape(str(r.get('split', '?')))}; "
            f"features of {html.escape(str(net.get('name', '?')))}.</p><table><tr><th></th>"
            f"<th>samples</th><th>floor (training data)</th></tr>{rows}</table>")


def _table_quality(r: dict[str, Any]) -> str:
    """quality.json of a table run: column shapes, correlations, missing rates,
    train-on-synthetic."""
    rows = [(f"{name} ({shape['metric']})", f"{shape['score']:.4f}")
            for name, shape in r["column_shapes"].items()]
    for label, key in (("column shapes, mean", "column_shapes_mean"),
                       ("correlation similarity", "correlation_similarity")):
        if isinstance(r.get(key), (int, float)):
            rows.append((label, f"{r[key]:.4f}"))
    for name, rate in (r.get("missing_rates") or {}).items():
        if isinstance(rate, dict) and (rate.get("real") or rate.get("synthetic")):
            rows.append((f"{name}: missing rate, real {r.get('split', '?')} / synthetic",
                         f"{rate.get('real', 0):.4f} / {rate.get('synthetic', 0):.4f}"))
    t = r.get("tstr")
    if isinstance(t, dict):
        for which in ("synthetic", "real", "majority"):
            value = t.get(f"accuracy_{which}")
            if isinstance(value, (int, float)):
                rows.append((f"accuracy predicting {t.get('target')}: "
                             f"{'trained on ' + which if which != 'majority' else 'majority'}",
                             f"{value:.4f}"))
    cells = "".join(f"<tr><th>{html.escape(a)}</th><td class=num>{b}</td></tr>" for a, b in rows)
    n = r.get("rows", {})
    return (f"<p>{n.get('synthetic', '?')} synthetic rows against {n.get('real_test', '?')} "
            f"real {html.escape(str(r.get('split', '?')))} rows (1 = the same distribution)."
            f"</p><table>{cells}</table>")
