"""The app's dataset, model and prediction pages and their JSON routes, through httpx against a real
uvicorn server on 127.0.0.1 (`live_site`).

The fixtures are real outputs: the session's ``trainable_dataset``, two tiny models trained and
registered with ``vitalflow train`` (in the session's temporary ``VITALFLOW_HOME``), a ``vitalflow
predict`` output of three unseen synthetic recordings, and one inference-service job result. Each
expectation is computed here from the files (the card JSON, the windows decoded from the parts, the
metrics documents, the Parquet tables), not from the app's own reading code.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import math
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jinja2")
import httpx  # noqa: E402

REGISTERED = "vitalflow-app-pages"  # a name of this module: other tests' versions do not interfere
SECRET = "s3://AKIAEXAMPLE:hunter2@bucket/ward/0042.vital?X-Amz-Signature=deadbeef"

_BUILT: dict = {}


def _vitalflow(*args) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "vitalflow", *map(str, args)], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def build_site(trainable_dataset: Path, tiny_config: Path, tmp_path_factory) -> dict:
    """Once per session (the browser tests share it): two registered models, a batch prediction
    output and a job result. Roots: the dataset's folder and the predictions' folder."""
    if _BUILT:
        return _BUILT
    work = tmp_path_factory.mktemp("app-pages")
    models = {}
    for seed in (0, 1):
        config = work / f"seed{seed}.yaml"
        config.write_text(tiny_config.read_text().replace("epochs: 6", "epochs: 2")
                          + f"seed: {seed}\nregistered_model: {REGISTERED}\n")
        out = _vitalflow("train", trainable_dataset, "--output", work / f"m{seed}", "--config", config).stdout
        line = next(x for x in out.splitlines() if x.startswith("registered: "))
        models[line.split()[1]] = work / f"m{seed}"
    assert sorted(models) == [f"{REGISTERED}/1", f"{REGISTERED}/2"]
    preds = work / "preds"
    _vitalflow("synth", preds / "unseen", "--cases", 3, "--seed", 77, "--no-waves", "--hours", 0.5)
    _vitalflow("predict", "--model", f"{REGISTERED}/1", "--input", preds / "unseen", "--clinical",
               preds / "unseen/clinical.csv", "--output", preds / "batch", "--workers", 1)
    # a decision model (its own registered name) and its batch predictions
    decisions = work / "decisions.yaml"
    decisions.write_text(tiny_config.read_text().replace("task: values", "task: decisions").replace("epochs: 6", "epochs: 2")
                         + f"registered_model: {REGISTERED}-decisions\n")
    _vitalflow("train", trainable_dataset, "--output", work / "md", "--config", decisions)
    _vitalflow("predict", "--model", work / "md", "--input", preds / "unseen", "--clinical",
               preds / "unseen/clinical.csv", "--output", preds / "decisions-batch", "--workers", 1)
    job = preds / "service-results" / "job-7"
    job.mkdir(parents=True)
    first = sorted((preds / "batch/cases").glob("*.parquet"))[0]
    shutil.copy(first, job / "timeline.parquet")
    (job / "summary.json").write_text(json.dumps({"jobId": "job-7", "input": SECRET, "model": {"uri": "m"}, "rows": 1}))
    _BUILT.update(dataset=trainable_dataset, models=models, preds=preds, batch=preds / "batch", job=job,
                  decision_model=(f"{REGISTERED}-decisions/1", work / "md"), decision_batch=preds / "decisions-batch",
                  roots=(str(trainable_dataset.parent), str(preds)), work=work)
    return _BUILT


@contextlib.contextmanager
def live_server(app):
    """``app`` served by uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the app did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def start_app(site: dict, state: Path):
    from vitalflow.api.app import create_app
    from vitalflow.api.settings import app_settings

    return create_app(app_settings(roots=site["roots"], state_dir=state))


@pytest.fixture(scope="module")
def site(trainable_dataset, tiny_config, tmp_path_factory):
    return build_site(trainable_dataset, tiny_config, tmp_path_factory)


@pytest.fixture(scope="module")
def http(site, tmp_path_factory):
    with live_server(start_app(site, tmp_path_factory.mktemp("app-state"))) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client


# --- helpers -----------------------------------------------------------------------------------------

def embedded(page: str, element_id: str):
    """The JSON a page embeds in ``<script type="application/json" id=...>``."""
    m = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', page, re.S)
    assert m, f"no {element_id} in the page"
    return json.loads(m.group(1))


def row_cells(page: str, selector: str) -> list[str]:
    """The text of the cells of the ``<tr ...selector...>`` row."""
    m = re.search(rf"<tr[^>]*{re.escape(selector)}[^>]*>(.*?)</tr>", page, re.S)
    assert m, f"no row {selector}"
    return [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", m.group(1), re.S)]


def row_starting(page: str, first: str) -> list[str]:
    """The text of the cells of the first row whose first cell reads ``first``."""
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S):
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<t[dh](?:\s[^>]*)?>(.*?)</t[dh]>", row, re.S)]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first}")


def dataset_id(http, path: Path) -> str:
    found = {d["path"]: d["id"] for d in http.get("/api/datasets").json()}
    return found[str(path.resolve())]


def card_of(path: Path) -> dict:
    return json.loads((path / "preprocessing_metadata.json").read_text())


def windows_of_case(dataset: Path, case_id: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """window start -> (timeseries [300, 16], mask [300, 16]) of a case, every part of every split
    read whole (not through its ledger blocks)."""
    from vitalflow.dataset.tfrecord import decode_example, read_records

    card = card_of(dataset)
    n = len(card["features"]["timeseries"])
    compression = None if card["config"]["output"]["compression"] == "none" else "GZIP"
    out = {}
    for split, parts in card["files"].items():
        for part in parts:
            for record in read_records(str(dataset / part["path"]), compression=compression):
                ex = decode_example(record)
                if int(ex["case_id"][0]) == case_id:
                    out[int(ex["window_start_s"][0])] = (ex["timeseries"].reshape(-1, n), ex["mask"].reshape(-1, n))
    return out


# --- datasets -------------------------------------------------------------------------------------

def test_dataset_list_and_page_show_the_cards_numbers(http, site):
    card = card_of(site["dataset"])
    listing = http.get("/datasets")
    assert listing.status_code == 200 and str(site["dataset"].resolve()) in listing.text
    ident = dataset_id(http, site["dataset"])
    page = http.get(f"/datasets/{ident}")
    assert page.status_code == 200
    for split, counts in card["splits"].items():
        assert row_cells(page.text, f'data-split="{split}"')[:4] == [split, str(counts["cases"]), str(counts["subjects"]),
                                                                     str(counts["windows"])]
        balance = row_cells(page.text.split('id="split-balance"')[1], f'data-split="{split}"')
        assert balance[1:3] == [f"{card['split_fractions']['target'][split]:.3f}",
                                f"{card['split_fractions']['achieved_subjects'][split]:.3f}"]
    counts = html.unescape(re.search(r'id="case-counts">(.*?)</dd>', page.text, re.S).group(1))
    assert f"{card['cases']['with_windows']} with windows" in counts and f"{card['cases']['failed']} failed" in counts
    assert f"Excluded cases ({len(card['excluded'])})" in page.text and f"Failed cases ({len(card['failed'])})" in page.text
    # a link per case with windows
    for detail in card["case_details"]:
        link = f'href="/datasets/{ident}/cases/{detail["case_id"]}"'
        assert (link in page.text) == (detail["windows"] > 0)
    # the JSON route carries the same numbers
    api = http.get(f"/api/datasets/{ident}").json()
    assert api["splits"] == card["splits"] and api["fingerprint"] == card["fingerprint"]


def test_observed_filled_defaulted_fractions_sum_to_one_per_feature(http, site):
    card = card_of(site["dataset"])
    page = http.get(f"/datasets/{dataset_id(http, site['dataset'])}").text
    chart = embedded(page, "fractions-data")
    assert [f["feature"] for f in chart] == [f["name"] for f in card["features"]["timeseries"]]
    for f in chart:
        stats = card["feature_stats"][f["feature"]]
        assert (f["observed"], f["filled"], f["defaulted"]) == (
            stats["observed_fraction"], stats["filled_fraction"], stats["defaulted_fraction"])
        assert math.isclose(f["observed"] + f["filled"] + f["defaulted"], 1.0, abs_tol=1e-5), f
    assert 'id="fractions-chart"' in page


def test_value_histograms_come_from_a_bounded_sample_over_each_features_range(http, site):
    card = card_of(site["dataset"])
    h = http.get(f"/api/datasets/{dataset_id(http, site['dataset'])}/histograms").json()
    assert 0 < h["windows_used"] <= h["windows_read"] <= 2000 + len(card["files"])
    for f, spec in zip(h["features"], card["features"]["timeseries"], strict=True):
        assert f["feature"] == spec["name"] and len(f["edges"]) == len(f["counts"]) + 1
        assert (f["edges"][0], f["edges"][-1]) == tuple(spec["range"])
        assert 0 <= sum(f["counts"]) <= h["seconds"]
    assert sum(sum(f["counts"]) for f in h["features"]) > 0


def test_the_case_page_shades_exactly_the_zero_runs_of_the_mask(http, site):
    card = card_of(site["dataset"])
    case_id = next(d["case_id"] for d in card["case_details"] if d["windows"] and d["split"] == "validation")
    ident = dataset_id(http, site["dataset"])
    page = http.get(f"/datasets/{ident}/cases/{case_id}")
    assert page.status_code == 200
    shown = embedded(page.text, "case-data")
    windows = windows_of_case(site["dataset"], case_id)
    assert shown["windows"] == len(windows) == next(d["windows"] for d in card["case_details"]
                                                    if d["case_id"] == case_id)
    mask = {}  # second -> the mask row recorded for it
    for start, (_, m) in windows.items():
        for i in range(m.shape[0]):
            mask[start + i] = m[i]
    assert shown["time_s"] == list(range(min(mask), max(mask) + 1))
    shaded_somewhere = 0
    for j, series in enumerate(shown["series"]):
        runs, begin = [], None
        for t in range(min(mask), max(mask) + 2):
            zero = t in mask and mask[t][j] == 0
            if zero and begin is None:
                begin = t
            if not zero and begin is not None:
                runs.append([begin, t])
                begin = None
        assert series["imputed"] == runs, series["feature"]
        shaded_somewhere += len(runs)
    assert shaded_somewhere > 0
    # the values are the windows' values in clinical units
    spec = card["features"]["timeseries"][0]
    start, (ts, _) = min(windows.items())
    lo, hi = spec["range"]
    assert shown["series"][0]["values"][0] == pytest.approx(lo + (float(ts[0, 0]) + 1) / 2 * (hi - lo), abs=1e-5)
    assert http.get(f"/api/datasets/{ident}/cases/{case_id}").json()["series"] == shown["series"]
    assert http.get(f"/datasets/{ident}/cases/999999").status_code == 404


# --- models ---------------------------------------------------------------------------------------

def _ratio(metrics: dict, kind: str, model: str = "model") -> float:
    ratios = [metrics["models"][model][t][kind]["mae"] / p[kind]["mae"] for t, p in metrics["models"]["persistence"].items()
              if metrics["models"][model][t][kind]["mae"] is not None and p[kind]["mae"]]
    return sum(ratios) / len(ratios)


def test_models_table_shows_versions_metrics_against_persistence_and_lineage(http, site):
    page = http.get("/models")
    assert page.status_code == 200
    ident = dataset_id(http, site["dataset"])
    for reference, model_dir in site["models"].items():
        metrics = json.loads((model_dir / "evaluation/test/metrics.json").read_text())
        model_card = json.loads((model_dir / "model_card.json").read_text())
        cells = row_cells(page.text, f'data-reference="{reference}"')
        assert cells[0] == reference
        assert cells[3] == f"{model_card['metrics']['val_loss']:.5g}"
        assert cells[4:6] == ["-", "-"]  # a value model has no decision AUPRC
        assert cells[6] == f"{_ratio(metrics, 'all'):.4g}" and cells[7] == f"{_ratio(metrics, 'changed'):.4g}"
        assert cells[9] == model_card["dataset"]["fingerprint"][:19]
        assert cells[11] == model_card["config_hash"][:19]
    # the lineage links to the dataset page (its fingerprint is below the roots)
    assert f'href="/datasets/{ident}"' in page.text
    row = next(v for v in http.get("/api/models").json()["versions"] if v["reference"] == f"{REGISTERED}/1")
    assert row["dataset_id"] == ident


def test_promote_points_the_alias_at_the_version(http, site):
    from vitalflow.registry.versions import find_version

    answer = http.post("/models/promote", data={"reference": f"{REGISTERED}/2", "alias": "champion"},
                       follow_redirects=False)
    assert answer.status_code == 303
    assert find_version(f"{REGISTERED}@champion").version == "2"
    page = http.get(answer.headers["location"]).text
    assert "@champion" in row_cells(page, f'data-reference="{REGISTERED}/2"')[1]
    assert "@champion" not in row_cells(page, f'data-reference="{REGISTERED}/1"')[1]
    # moved back through the JSON route
    moved = http.post("/api/models/promote", json={"reference": f"{REGISTERED}/1", "alias": "champion"}).json()
    assert moved["before"] == "2" and find_version(f"{REGISTERED}@champion").version == "1"
    refused = http.post("/models/promote", data={"reference": f"{REGISTERED}/1", "alias": "latest"})
    assert refused.status_code == 400 and "cannot be an alias" in refused.text
    assert http.post("/api/models/promote", json={"reference": f"{REGISTERED}/99", "alias": "x"}).status_code == 400


def test_model_page_shows_metrics_and_serves_only_its_report_images(http, site):
    from vitalflow.evaluate.report import comparison_table

    reference, model_dir = next(iter(site["models"].items()))
    name, version = reference.split("/")
    page = http.get(f"/models/{name}/{version}")
    assert page.status_code == 200
    metrics = json.loads((model_dir / "evaluation/test/metrics.json").read_text())
    propofol = metrics["models"]["model"]["Propofol_INF"]["all"]["mae"]
    assert row_starting(page.text.split('id="metrics-all"')[1], "Propofol_INF")[3] == f"{propofol:.4g}"
    assert comparison_table(metrics, "changed")[0] == row_starting(page.text.split('id="metrics-changed"')[1], "target")
    images = sorted(p.name for p in (model_dir / "evaluation/test").glob("*.png"))
    assert images and all(f"/evaluation/test/{n}" in page.text for n in images)
    for n in images:
        got = http.get(f"/models/{name}/{version}/evaluation/test/{n}")
        assert got.status_code == 200 and got.headers["content-type"] == "image/png"
        assert got.content == (model_dir / "evaluation/test" / n).read_bytes()
    for bad in ("evaluation/test/metrics.json", "evaluation/test/..%2F..%2Fmodel_card.json",
                "evaluation/nosplit/timeline.png", "evaluation/test/missing.png"):
        assert http.get(f"/models/{name}/{version}/{bad}").status_code == 404, bad
    assert http.get(f"/models/{name}/99").status_code == 404
    assert http.get("/models/no-such-model/1").status_code == 404


def test_compare_page_shows_both_versions_side_by_side(http, site):
    (ra, da), (rb, db) = sorted(site["models"].items())
    page = http.get("/models/compare", params={"a": ra, "b": rb})
    assert page.status_code == 200
    ma, mb = (json.loads((d / "evaluation/test/metrics.json").read_text()) for d in (da, db))
    assert f"{ma['windows']} windows, the same for both" in html.unescape(page.text)
    all_table = page.text.split('id="compare-all"')[1]
    assert row_starting(all_table, "target")[:5] == ["target", "unit", "n", ra, rb]
    cells = row_starting(all_table, "Propofol_INF")
    assert cells[3:5] == [f"{ma['models']['model']['Propofol_INF']['all']['mae']:.4g}",
                          f"{mb['models']['model']['Propofol_INF']['all']['mae']:.4g}"]
    summary = row_starting(page.text.split('id="summary"')[1], "mean MAE / persistence, changed windows")
    assert summary[1:] == [f"{_ratio(ma, 'changed'):.4g}", f"{_ratio(mb, 'changed'):.4g}"]
    assert http.get("/api/models/compare", params={"a": ra, "b": rb}).json()["labels"] == [ra, rb]
    # a path is no registry reference: nothing is read from it
    assert http.get("/api/models/compare", params={"a": str(da), "b": rb}).status_code == 400
    assert http.get("/models/compare", params={"a": "/etc", "b": rb}).status_code == 400


# --- predictions ----------------------------------------------------------------------------------

def _same_column(shown: list, column: list) -> bool:
    return len(shown) == len(column) and all(
        (s is None and (c is None or math.isnan(c))) or s == c for s, c in zip(shown, column))


def test_prediction_pages_show_the_parquet_columns(http, site):
    import pyarrow.parquet as pq

    listing = http.get("/api/predictions").json()
    batch = next(b for b in listing["batches"] if b["path"] == str(site["batch"].resolve()))
    card = json.loads((site["batch"] / "prediction_card.json").read_text())
    assert (batch["ok"], batch["rows"]) == (card["cases"]["ok"], card["cases"]["rows"])
    assert http.get("/predictions").status_code == 200
    page = http.get(f"/predictions/{batch['id']}")
    assert page.status_code == 200
    for done in card["done"]:
        assert f'href="/predictions/{batch["id"]}/cases/{done["case_id"]}"' in page.text
    case_id = card["done"][0]["case_id"]
    shown = embedded(http.get(f"/predictions/{batch['id']}/cases/{case_id}").text, "timeline-data")
    table = pq.read_table(site["batch"] / f"cases/{case_id}.parquet").to_pydict()
    assert shown["time_s"] == table["time_s"]
    assert [t["name"] for t in shown["targets"]] == [t["name"] for t in card["targets"]]
    assert len(shown["targets"]) == 8
    for t in shown["targets"]:
        assert _same_column(t["predicted"], table[f"{t['name']}_pred"]), t["name"]
        assert _same_column(t["recorded"], table[f"{t['name']}_recorded"]), t["name"]
    assert http.get(f"/api/predictions/{batch['id']}/cases/{case_id}").json() == shown
    assert http.get(f"/predictions/{batch['id']}/cases/999999").status_code == 404


def test_a_decision_model_page_shows_the_event_tables_and_its_curves(http, site):
    from vitalflow.evaluate.decisions import event_table

    reference, model_dir = site["decision_model"]
    name, version = reference.split("/")
    page = http.get(f"/models/{name}/{version}")
    assert page.status_code == 200
    metrics = json.loads((model_dir / "evaluation/test/metrics.json").read_text())
    expected = event_table(metrics, "auprc")
    table = page.text.split('id="metrics-events"')[1].split("</table>")[0]
    assert row_starting(table, "event") == expected[0]
    for row in expected[1:]:
        assert row_starting(table, row[0]) == row  # the numbers of metrics.json, intervals included
    for image in ("pr_curves.png", "roc_curves.png", "reliability.png"):
        assert f"/evaluation/test/{image}" in page.text
    models = http.get("/models").text
    mean = [ev["scorers"]["model"]["auprc"] for ev in metrics["events"].values()
            if ev["positives"] and ev["scorers"]["model"]["auprc"] is not None]
    assert row_cells(models, f'data-reference="{reference}"')[4] == f"{sum(mean) / len(mean):.4g}"


def test_a_decision_timeline_shows_alert_probabilities_and_the_decisions(http, site):
    import pyarrow.parquet as pq

    batch = next(b for b in http.get("/api/predictions").json()["batches"]
                 if b["path"] == str(site["decision_batch"].resolve()))
    card = json.loads((site["decision_batch"] / "prediction_card.json").read_text())
    case_id = card["done"][0]["case_id"]
    page = http.get(f"/predictions/{batch['id']}/cases/{case_id}").text
    shown = embedded(page, "timeline-data")
    table = pq.read_table(site["decision_batch"] / f"cases/{case_id}.parquet").to_pydict()
    assert shown["decisions"] is True and "the windows after which it did change" in page
    assert [t["name"] for t in shown["targets"]][:3] == ["hypnotic_60s", "hypnotic_300s", "hypnotic_600s"]
    alerts = [t for t in shown["targets"] if t["unit"] == "probability"]
    assert len(alerts) == 15
    for t in shown["targets"]:
        assert _same_column(t["predicted"], table[f"{t['name']}_pred"]), t["name"]
        assert _same_column(t["recorded"], table[f"{t['name']}_recorded"]), t["name"]
    assert all(0 <= p <= 1 for t in alerts for p in t["predicted"])


def test_a_job_results_timeline_without_credentials(http, site):
    import pyarrow.parquet as pq

    job = next(j for j in http.get("/api/predictions").json()["jobs"] if j["job_id"] == "job-7")
    assert job["input"] == "s3://bucket/ward/0042.vital"
    page = http.get(f"/predictions/{job['id']}")
    assert page.status_code == 200
    assert "hunter2" not in page.text and "AKIAEXAMPLE" not in page.text and "deadbeef" not in page.text
    table = pq.read_table(site["job"] / "timeline.parquet").to_pydict()
    shown = embedded(page.text, "timeline-data")
    assert shown["time_s"] == table["time_s"]
    assert all(_same_column(t["predicted"], table[f"{t['name']}_pred"]) for t in shown["targets"])
    assert "hunter2" not in http.get("/predictions").text


# --- what the pages refuse ------------------------------------------------------------------------

def _forged(index: int, relative: str) -> str:
    return f"{index}." + base64.urlsafe_b64encode(relative.encode()).decode().rstrip("=")


def test_forged_ids_and_locations_outside_the_roots_are_refused(http, site, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(site["dataset"], outside / "ds")
    link = Path(site["roots"][1]) / "escape"
    link.symlink_to(outside / "ds")
    try:
        listed = [d["path"] for d in http.get("/api/datasets").json()]
        assert str(outside / "ds") not in listed and str(link) not in listed
        refusals = {
            "/datasets/not-an-id": 400, "/api/datasets/%2E%2E": 400,
            f"/datasets/{_forged(0, '../' + outside.name)}": 404,
            f"/datasets/{_forged(0, str(outside / 'ds'))}": 404,  # an absolute path
            f"/datasets/{_forged(1, 'escape')}": 404,  # a link out of the root
            f"/datasets/{_forged(7, 'out')}": 404,  # no such root
            f"/datasets/{_forged(0, 'rec')}": 404,  # inside, but no dataset there
            f"/api/datasets/{_forged(1, 'escape')}/cases/1": 404,
            f"/predictions/{_forged(0, '../../etc')}": 404,
            f"/predictions/{_forged(1, 'batch')}/cases/..%2F..%2Fprediction_card": 404,
        }
        for url, status in refusals.items():
            assert http.get(url).status_code == status, url
    finally:
        link.unlink()
