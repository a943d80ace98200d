"""`vaekit serve` in a real browser: the real server on a free port, driven in headless
Chromium through Selenium. Moving a slider changes the decoded image, clicking the 2-D latent
map decodes the point, and `vaekit report`'s page shows every image from a file:// address.

Skips where Chromium, its driver or Selenium is missing (.ci/run installs them). With
VAEKIT_SCREENSHOT_DIR set, the screenshots are kept there (the README's come from
`VAEKIT_BROWSER_RUN=RUN VAEKIT_SCREENSHOT_DIR=docs pytest tests/test_serve_browser.py`)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TINY
from vaekit.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="needs Debian's chromium and chromium-driver")
pytest.importorskip("selenium")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def screenshot_path(tmp_path: Path, name: str) -> Path:
    folder = os.environ.get("VAEKIT_SCREENSHOT_DIR")
    return Path(folder) / name if folder else tmp_path / name


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("VAEKIT_BROWSER_RUN")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("browser") / "run"
    assert main(["train", "--out", str(out), *TINY, "--epochs", "3"]) == 0
    return out


@pytest.fixture(scope="module")
def server(run: Path) -> Iterator[str]:
    yield from _serve(run)


def _serve(run: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "vaekit", "serve", str(run), "--port",
                                str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "api/info", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode() if process.stdout else ""
                    pytest.fail(f"the server did not start: {output}")
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1200,1150"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _decoded(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, "decoded").get_attribute("src") or "")


def test_moving_a_slider_changes_the_decoded_image(server: str, browser: Any,
                                                   tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server)
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: _decoded(d).startswith("data:image/png;base64,"))
    # the samples and the interpolation fill in too
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#samples img")) > 0)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#frames img")) > 0)
    # the 16 most used dimensions are shown, the rest behind "show all dimensions"
    latent_dim = browser.execute_script("return info.latent_dim")
    shown = [e for e in browser.find_elements(By.CSS_SELECTOR, ".slider") if e.is_displayed()]
    assert len(shown) == min(16, latent_dim)
    before = _decoded(browser)
    browser.find_element(By.ID, "slider-0").send_keys(Keys.END)  # to the end of its range
    wait.until(lambda d: _decoded(d) != before)
    assert browser.find_element(By.ID, "error").text == ""
    browser.find_element(By.ID, "slider-0").send_keys(Keys.HOME)
    wait.until(lambda d: _decoded(d) not in (before, ""))
    path = screenshot_path(tmp_path, "explorer.png")
    browser.find_element(By.ID, "slider-0").send_keys(*[Keys.RIGHT] * 60)
    time.sleep(0.5)
    assert browser.save_screenshot(str(path)) and path.read_bytes()[:4] == b"\x89PNG"


def test_clicking_the_latent_map_decodes_the_point(server: str, browser: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server)
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: _decoded(d).startswith("data:image/png;base64,"))
    info = browser.execute_script("return info")
    if info["latent_dim"] != 2:
        pytest.skip("the latent map is shown for 2-D latents")
    canvas = browser.find_element(By.ID, "latent-map")
    wait.until(lambda d: canvas.is_displayed())
    before = _decoded(browser)
    ActionChains(browser).move_to_element_with_offset(canvas, 150, -150).click().perform()
    wait.until(lambda d: _decoded(d) != before)


def test_the_report_shows_every_image_from_a_file_address(run: Path, browser: Any,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(run), "-o", str(out)]) == 0
    browser.get(out.as_uri())
    sizes = browser.execute_script(
        "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1)")
    assert len(sizes) >= 3 and all(s > 0 for s in sizes), sizes
    path = screenshot_path(tmp_path, "report.png")
    assert browser.save_screenshot(str(path)) and path.read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def table_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pd = pytest.importorskip("pandas")
    import numpy as np

    root = tmp_path_factory.mktemp("table-browser")
    rng = np.random.default_rng(0)
    pd.DataFrame({"size": rng.normal(5, 2, 200), "kind": rng.choice(["a", "b", "c"], 200)}
                 ).to_csv(root / "t.csv", index=False)
    assert main(["train", "--data", str(root / "t.csv"), "--out", str(root / "run"), *TINY]) == 0
    yield from _serve(root / "run")


def test_a_table_runs_decoded_row_follows_a_slider(table_server: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    def row(d: Any) -> str:
        return str(d.find_element(By.ID, "decoded-row").text)

    browser.get(table_server)
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: "size" in row(d) and "kind" in row(d))
    before = row(browser)
    browser.find_element(By.ID, "slider-0").send_keys(Keys.END)
    wait.until(lambda d: row(d) not in (before, ""))
    assert browser.find_element(By.ID, "error").text == ""


@pytest.fixture(scope="module")
def conditional_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    out = tmp_path_factory.mktemp("cvae-browser") / "run"
    assert main(["train", "--out", str(out), *TINY, "--epochs", "3", "--condition", "label"]) == 0
    yield from _serve(out)


def test_choosing_a_class_redraws_a_conditional_runs_images(conditional_server: str,
                                                            browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def samples(d: Any) -> list[str]:
        return [str(e.get_attribute("src")) for e in d.find_elements(By.CSS_SELECTOR,
                                                                      "#samples img")]

    browser.get(conditional_server)
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: _decoded(d).startswith("data:image/png;base64,") and samples(d))
    assert browser.find_element(By.ID, "class-row").is_displayed()
    before, drawn = _decoded(browser), samples(browser)
    Select(browser.find_element(By.ID, "class")).select_by_visible_text("7")
    wait.until(lambda d: _decoded(d) != before and samples(d) not in (drawn, []))
    assert browser.find_element(By.ID, "error").text == ""
