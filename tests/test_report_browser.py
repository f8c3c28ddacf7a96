"""The morning report in a real browser: headless Chromium renders it, with JavaScript off.

Checks what a reader gets: a screenshot that is not blank, every image decoded (naturalWidth > 0)
and no request other than the file itself and its data: images. A control page with an external
image and stylesheet proves the checker sees such requests. Skipped only when Chromium is absent.
"""

from __future__ import annotations

import datetime as dt

import pytest
from browser import Browser, check_page, chromium_path

from medspark.report import NightSummary, Stage, render_history, render_night
from medspark.report.example import example_night

DATE = dt.date(2025, 3, 14)


@pytest.fixture(scope="module")
def browser():
    if chromium_path() is None:
        pytest.fail("chromium is not installed (Debian: apt-get install chromium; .ci/run "
                    "installs it)")
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    reports = root / "reports"
    render_night(example_night(DATE - dt.timedelta(days=1), seed=1), reports / "2025-03-13")
    night = render_night(example_night(DATE, discovery_dir=root / "discoveries"),
                         reports / DATE.isoformat())
    bare = render_night(NightSummary(date=DATE, lake="/lake", stages=[
        Stage(name="ingest", status="failed", reason="input not readable")]), root / "bare")
    return night, render_history(reports), bare


def _assert_clean(result: dict, min_images: int) -> None:
    assert result["requests"][0] == result["url"]
    assert result["external_requests"] == [], result["external_requests"]
    assert result["failed_requests"] == []
    assert result["scripts"] == 0
    assert len(result["images"]) >= min_images
    assert result["images_failed"] == [], result["images_failed"]
    assert all(i["complete"] for i in result["images"])
    assert result["pixel_std"] > 10, "screenshot looks blank"


def test_night_report_renders_offline(browser, reports, tmp_path):
    night, _, _ = reports
    result = browser.check(night, tmp_path / "night.png")
    _assert_clean(result, min_images=6)
    assert DATE.isoformat() in result["title"]
    assert result["text_chars"] > 2000  # readable text without JavaScript
    assert result["height"] > 3000  # the whole page, not only the first screen


def test_bare_night_and_history_render(browser, reports, tmp_path):
    _, history, bare = reports
    result = browser.check(bare, tmp_path / "bare.png")
    _assert_clean(result, min_images=0)  # no figure to draw, yet not blank
    assert "needs attention" in result["title"].replace("_", " ")
    result = check_page(history, tmp_path / "history.png")  # the one-call helper
    _assert_clean(result, min_images=1)
    assert result["text_chars"] > 100


def test_checker_sees_network_requests_and_broken_images(browser, tmp_path):
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><html><head><link rel="stylesheet" '
                    'href="https://cdn.example.invalid/x.css"></head><body><h1>leak</h1>'
                    '<img src="http://example.invalid/x.png" width="20" height="20">'
                    '<img src="data:image/png;base64,bm90IGEgcG5n"></body></html>')
    result = browser.check(page, tmp_path / "leaky.png")
    assert "https://cdn.example.invalid/x.css" in result["external_requests"]
    assert "http://example.invalid/x.png" in result["external_requests"]
    assert len(result["images_failed"]) == 2
