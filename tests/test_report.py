"""`vaekit report`: one self-contained HTML file: every image embedded as a PNG data: URI, no
URL, script or stylesheet link; the saved evaluation and quality reports shown; safe output."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import TINY
from vaekit.cli import main
from vaekit.views.report import PNG_SIGNATURE


class _Page(HTMLParser):
    """Every tag with its attributes, and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    page.close()
    return page


def assert_self_contained(path: Path) -> list[bytes]:
    """The page's images (PNG bytes), after checking that it fetches nothing."""
    page = parse(path)
    source = path.read_text()
    assert "http://" not in source and "https://" not in source and "url(" not in source
    images = []
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed"), tag
        for name in ("src", "href", "srcset", "data", "poster", "action"):
            value = attrs.get(name)
            if value is None:
                continue
            assert name == "src" and tag == "img", (tag, name)
            prefix = "data:image/png;base64,"
            assert value.startswith(prefix), value[:40]
            png = base64.b64decode(value[len(prefix):], validate=True)
            assert png.startswith(PNG_SIGNATURE)
            images.append(png)
    return images


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("report") / "run"
    assert main(["train", "--out", str(run), *TINY, "--epochs", "3"]) == 0
    assert main(["evaluate", str(run), "--k", "5", "--json"]) == 0
    return run


def test_the_page_embeds_every_image_and_fetches_nothing(evaluated_run: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(evaluated_run), "-o", str(out)]) == 0
    images = assert_self_contained(out)
    # curves + the run's samples, reconstructions, KL per dimension and 2-D latent plots
    pictures = sum((evaluated_run / n).exists() for n in ("samples.png", "reconstructions.png",
                                                          "kl_per_dim.png", "latent.png"))
    assert pictures == 4 and len(images) == 1 + pictures
    text = " ".join(parse(out).text)
    saved = json.loads((evaluated_run / "evaluation.json").read_text())
    assert f"{saved['nll']:.3f}" in text and "importance-weighted" in text
    assert "vaekit quality RUN" in text  # no quality.json: the page says how to add it
    assert "latent_dim" in text and "train_size" in text  # the config and the data


def test_a_hierarchy_shows_the_kl_of_each_group_and_only_its_own_fields(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "r.html"
    assert main(["train", "--out", str(run), "--model", "hvae", "--hvae-latents", "4,2",
                 "--hvae-widths", "32,16", "--epochs", "2", "--batch-size", "50",
                 "--quiet"]) == 0
    assert main(["report", str(run), "-o", str(out)]) == 0
    page = parse(out)
    captions = " ".join(attrs.get("alt") or "" for tag, attrs in page.tags if tag == "img")
    assert "KL of each latent group" in captions
    fields = {t.strip() for t in page.text}
    assert "model_options" in fields and "hidden" not in fields and "latent_dim" not in fields


def test_quality_results_appear_when_saved(evaluated_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    (run / "quality.json").write_text(json.dumps({
        "n": 100, "samples": "means of p(x|z)", "data": "digits", "split": "test",
        "feature_network": {"name": "classifier-abc"}, "fd": 12.345678, "precision": 0.5,
        "recall": 0.25, "floor": {"fd": 1.5, "precision": 0.9, "recall": 0.8}}))
    out = tmp_path / "r.html"
    assert main(["report", str(run), "-o", str(out)]) == 0
    text = " ".join(parse(out).text)
    assert "12.3457" in text and "classifier-abc" in text


@pytest.mark.parametrize("case", ["existing", "run file", "not html", "not a run",
                                  "bad json"])
def test_bad_requests_are_one_line_and_write_nothing(
        case: str, evaluated_run: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    run = evaluated_run
    out = tmp_path / "r.html"
    before = None
    if case == "existing":
        out.write_text("mine")
        before = "mine"
    elif case == "run file":
        out = run / "metrics.jsonl"
        before = out.read_text()
    elif case == "not html":
        out = tmp_path / "r.png"
    elif case == "not a run":
        run = tmp_path
    elif case == "bad json":
        run = tmp_path / "copy"
        shutil.copytree(evaluated_run, run)
        (run / "evaluation.json").write_text("{not json")
    capsys.readouterr()
    assert main(["report", str(run), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("vaekit: error:"), err
    if before is not None:
        assert out.read_text() == before
    else:
        assert not out.exists()
