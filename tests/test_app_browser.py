"""The app in a real browser, as a person uses it: Playwright drives Debian's chromium against
``vitalflow app`` running as a server (a subprocess on a free port).

The flow: bad form input shows the error and starts nothing; a preprocessing job on the demo
corpus started from the form completes (the status turns ``succeeded``, the log tail shows the
run's lines) and links to its dataset page; a training job is stopped while it runs (``stopped``),
resumed, completes and shows its loss chart, and the registry page lists the model.

Screenshots of each page go to ``$VITALFLOW_SCREENSHOTS`` (default: the test's temporary
directory); with ``VITALFLOW_DOCS_SCREENSHOTS=1`` the jobs list and the training job's page are
also copied to ``docs/screenshots/`` (README shows them).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from app_harness import CHROMIUM, app_server, browser_page, screenshots_dir
from tests.conftest import TINY_TRAIN_CONFIG

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
expect = sync_api.expect


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The demo's corpus (12 cases of 1.5 h, seed 0), its run config, and a training config: the
    tiny network with enough epochs to stop it while it runs."""
    from vitalflow.synth import synth_corpus

    root = tmp_path_factory.mktemp("browser-root")
    synth_corpus(root / "recordings", 12, seed=0, hours=1.5, waves=False)
    (root / "run.yaml").write_text("split: {seed: 3}\n")
    (root / "train.yaml").write_text(TINY_TRAIN_CONFIG.replace("epochs: 6", "epochs: 60"))
    return root


@pytest.fixture(scope="module")
def server(corpus):
    with app_server([corpus], corpus / "state") as url:
        yield url


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return screenshots_dir(tmp_path_factory)


@pytest.fixture
def page(server):
    with browser_page(server) as page:
        yield page


def _shoot(page, shots: Path, name: str, docs: bool = False) -> None:
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if docs and os.environ.get("VITALFLOW_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS / path.name)


def _jobs(page) -> list:
    return page.request.get("/api/jobs").json()["jobs"]


def test_bad_form_input_shows_the_error_and_starts_nothing(page, shots, corpus):
    page.goto("/jobs/new?kind=preprocess")
    for field, value, message in [("input", "../recordings", "'..' is not allowed in a path"),
                                  ("input", "/etc", "outside the app's roots"),
                                  ("cases", "1-x", "case selection item '1-x'")]:
        page.fill("#f-input", "recordings")
        page.fill("#f-clinical", "recordings/clinical.csv")
        page.fill("#f-output", "dataset")
        page.fill("#f-cases", "")
        page.fill(f"#f-{field}", value)
        page.click("#start")
        expect(page.locator("#form-error")).to_contain_text(message)
        expect(page.locator(f"#f-{field}")).to_have_value(value)  # what was typed stays
    _shoot(page, shots, "job-form-error")
    assert _jobs(page) == []


def test_preprocess_then_train_stop_resume_and_registry(page, shots, corpus):
    # preprocessing from the form
    page.goto("/jobs")
    _shoot(page, shots, "jobs-empty")
    page.click("text=New preprocess")
    page.fill("#f-input", "recordings")
    page.fill("#f-clinical", "recordings/clinical.csv")
    page.fill("#f-output", "dataset")
    page.fill("#f-config", "run.yaml")
    page.fill("#f-workers", "2")
    _shoot(page, shots, "job-form")
    page.click("#start")
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]{12}$"))
    expect(page.locator("#status")).to_have_text("succeeded", timeout=120_000)
    expect(page.locator("#log")).to_contain_text("success:", timeout=10_000)
    expect(page.locator("#progress-text")).to_contain_text("12/12 cases")
    _shoot(page, shots, "job-preprocess")

    # its dataset page
    link = page.locator("#dataset-link")
    assert link.get_attribute("href").startswith("/datasets/")
    link.click()
    expect(page.locator("h1")).to_be_visible()
    assert page.url.rsplit("/", 1)[-1] != "jobs"
    _shoot(page, shots, "dataset")

    # training: stop it while it runs, resume it, see it complete
    page.goto("/jobs/new?kind=train")
    page.fill("#f-dataset", "dataset")
    page.fill("#f-output", "model")
    page.fill("#f-config", "train.yaml")
    page.click("#start")
    expect(page.locator("#progress-text")).to_contain_text("epoch", timeout=180_000)
    page.click("#stop")
    expect(page.locator("#status")).to_have_text("stopped", timeout=60_000)
    _shoot(page, shots, "job-stopped")
    page.click("#resume")
    expect(page.locator("#status")).to_have_text(re.compile("queued|running|succeeded"))
    expect(page.locator("#status")).to_have_text("succeeded", timeout=240_000)
    expect(page.locator("#log")).to_contain_text("--- resumed at")
    expect(page.locator("#log")).to_contain_text("registered:")
    expect(page.locator("#chart-card canvas")).to_be_visible()
    _shoot(page, shots, "job-train", docs=True)

    # the jobs list
    page.goto("/jobs")
    rows = page.locator("#jobs tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#jobs .status-cell").first).to_have_text("succeeded")
    _shoot(page, shots, "jobs", docs=True)

    # the registry lists the model (the models page, when the app has it)
    answer = page.goto("/models")
    if answer.status != 404:
        expect(page.locator("main")).to_contain_text("vitalflow")
        _shoot(page, shots, "models")
