"""The dataset, case and prediction pages in a real browser: Playwright drives Debian's chromium
against ``vitalflow app`` (a subprocess on a free port) over the outputs `test_app_pages` builds
(the session's dataset, two registered tiny models, a batch prediction output).

What a person would see is checked on the canvases' pixels: the charts are drawn (not blank), the
case page's imputed stretches are shaded (the shade's colour appears exactly in the charts of the
signals that have stretches), the prediction timeline draws predicted lines and recorded points.
Screenshots go to ``$VITALFLOW_SCREENSHOTS`` (default: the test's temporary directory), as in
``tests/test_app_browser.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api")
from app_harness import CHROMIUM, app_server, browser_page, screenshots_dir  # noqa: E402
from test_app_pages import build_site  # noqa: E402  (the same outputs, built once per session)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")

#: Counts a canvas's pixels: drawn (alpha > 0), of the imputed shade (rgba(255, 140, 0, 0.25) on a
#: transparent canvas), blue (the predicted line / signal), orange (recorded points).
PIXELS = """canvas => {
  const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let drawn = 0, shade = 0, blue = 0, orange = 0;
  for (let i = 0; i < d.length; i += 4) {
    const [r, g, b, a] = [d[i], d[i + 1], d[i + 2], d[i + 3]];
    if (a > 0) drawn++;
    if (Math.abs(r - 255) <= 3 && Math.abs(g - 140) <= 3 && b <= 3 && Math.abs(a - 64) <= 3) shade++;
    if (a > 200 && b > 200 && r < 80 && g > 90 && g < 140) blue++;
    if (a > 200 && r > 190 && g > 140 && g < 190 && b < 80) orange++;
  }
  return {drawn, shade, blue, orange, size: canvas.width * canvas.height};
}"""


@pytest.fixture(scope="module")
def site(trainable_dataset, tiny_config, tmp_path_factory):
    return build_site(trainable_dataset, tiny_config, tmp_path_factory)


@pytest.fixture(scope="module")
def server(site, tmp_path_factory):
    with app_server(site["roots"], tmp_path_factory.mktemp("pages-browser-state"), ready_path="/datasets") as url:
        yield url


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return screenshots_dir(tmp_path_factory)


@pytest.fixture
def page(server):
    with browser_page(server) as page:
        yield page


def _dataset_id(page, site) -> str:
    return next(d["id"] for d in page.request.get("/api/datasets").json()
                if d["path"] == str(site["dataset"].resolve()))


def test_the_dataset_pages_charts_are_drawn(page, site, shots):
    page.goto(f"/datasets/{_dataset_id(page, site)}")
    chart = page.locator("#fractions-chart canvas")
    sync_api.expect(chart).to_have_count(1)
    stacked = chart.evaluate(PIXELS)
    assert stacked["drawn"] > stacked["size"] * 0.05, stacked  # bars, not an empty frame
    sync_api.expect(page.locator("#histograms .chart canvas")).to_have_count(16)
    drawn = [c.evaluate(PIXELS)["drawn"] for c in page.locator("#histograms .chart canvas").all()]
    assert sum(d > 0 for d in drawn) >= 12, drawn  # a feature never recorded may have an empty histogram
    page.locator("#fractions-chart").screenshot(path=str(shots / "dataset-fractions.png"))
    page.screenshot(path=str(shots / "dataset.png"), full_page=True)


def test_the_case_page_shades_the_imputed_stretches(page, site, shots):
    ident = _dataset_id(page, site)
    summary = page.request.get(f"/api/datasets/{ident}").json()
    case_id = next(c["case_id"] for c in summary["case_list"] if c["windows"])
    expected = page.request.get(f"/api/datasets/{ident}/cases/{case_id}").json()
    page.goto(f"/datasets/{ident}/cases/{case_id}")
    boxes = page.locator("#signals .chart")
    sync_api.expect(boxes.locator("canvas")).to_have_count(16)
    with_stretches = 0
    for box, series in zip(boxes.all(), expected["series"], strict=True):
        assert box.get_attribute("data-feature") == series["feature"]
        pixels = box.locator("canvas").evaluate(PIXELS)
        if series["imputed"]:
            assert pixels["shade"] > 0, (series["feature"], pixels)
            with_stretches += 1
        else:
            assert pixels["shade"] == 0, (series["feature"], pixels)
    assert with_stretches > 0
    page.screenshot(path=str(shots / "dataset-case.png"), full_page=True)


def test_the_prediction_timeline_draws_predictions_and_recorded_points(page, site, shots):
    listing = page.request.get("/api/predictions").json()
    batch = next(b for b in listing["batches"] if b["path"] == str(site["batch"].resolve()))
    page.goto(f"/predictions/{batch['id']}")
    page.locator("#done a").first.click()
    sync_api.expect(page.locator("#targets .chart canvas")).to_have_count(8)
    pixels = [c.evaluate(PIXELS) for c in page.locator("#targets .chart canvas").all()]
    assert all(p["blue"] > 0 for p in pixels), pixels  # every target's predicted line
    assert sum(p["orange"] > 0 for p in pixels) >= 4, pixels  # recorded points (none where nothing was recorded)
    page.screenshot(path=str(shots / "prediction-timeline.png"), full_page=True)
