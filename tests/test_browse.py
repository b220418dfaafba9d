"""The data browser (results/<stage>/browse.html): its data, and the page in a real headless browser."""

import json
import re
import shutil

import pytest

from maximalcai import browse


def pairs_rows(n: int) -> list[dict]:
    return [
        {
            "pair_id": f"p{i:05d}",
            "prompt": f"### Instruction:\nQuestion number {i}?\n\n### Response:\n",
            "chosen": f"A fine answer, number {i}." if i != 7 else "Needle </script><b>bold</b>",
            "rejected": f"A loop a loop a loop {i}",
            "decided_by": ("check:stops", "check:constraint", "construction:privacy")[i % 3],
            "principle_ids": ["helpfulness"],
            "split": "heldout" if i % 10 == 0 else "train",
            "margin": i / n,
        }
        for i in range(n)
    ]


def page_data(page: str) -> list[dict]:
    return json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S)[1])


def test_the_page_holds_every_row_and_filters_the_columns_with_few_values():
    page = browse.render("stage1", {"pairs": pairs_rows(3000), "funnel": [{"step": "copies", "dropped": 4}]})
    data = page_data(page)  # "</script>" inside a cell cannot end the data element early
    pairs = data[0]
    assert [t["name"] for t in data] == ["pairs", "funnel"] and len(pairs["rows"]) == 3000
    assert set(pairs["filters"]) == {"decided_by", "split"}  # not the ids, texts or margins
    row = pairs["rows"][7]
    assert row[pairs["columns"].index("chosen")] == "Needle </script><b>bold</b>"
    assert row[pairs["columns"].index("principle_ids")] == '["helpfulness"]'
    assert "http://" not in page and "https://" not in page  # nothing to fetch


def chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(chromium() is None, reason="no Chromium here (Debian: apt-get install chromium)")
def test_the_page_searches_filters_and_pages_in_a_real_browser(tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    path = tmp_path / "browse.html"
    path.write_text(browse.render("stage1", {"pairs": pairs_rows(3000), "funnel": [{"step": "copies", "n": 4}]}))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page()
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(path.as_uri())
        assert page.locator("#count").inner_text() == "rows 1-50 of 3000"
        assert page.locator("#body tr").count() == 50
        page.fill("#search", "needle")
        assert page.locator("#count").inner_text() == "rows 1-1 of 1 (3000 in all)"
        assert "Needle </script><b>bold</b>" in page.locator("#body").inner_text()
        page.fill("#search", "")
        page.select_option('select[data-column="decided_by"]', label="decided_by: construction:privacy")
        assert page.locator("#count").inner_text() == "rows 1-50 of 1000 (3000 in all)"
        page.select_option('select[data-column="split"]', label="split: heldout")
        assert page.locator("#count").inner_text() == "rows 1-50 of 100 (3000 in all)"
        page.click("#next")
        assert page.locator("#count").inner_text() == "rows 51-100 of 100 (3000 in all)"
        page.click("text=funnel (1)")
        assert page.locator("#body").inner_text().split() == ["copies", "4"]
        browser.close()
    assert errors == []
    assert requests == [path.as_uri()]  # the page itself, nothing from the network


def test_a_stage_without_critiques_or_preferences_still_gets_its_page(tmp_path):
    """The CPU recipe makes no critiques and no preference labels: their tables are empty, not missing."""
    from maximalcai import tables

    paths = {}
    for tab, schema in browse.TABS.items():
        paths[tab] = str(tmp_path / f"{tab}.parquet")
        tables.write_table([], paths[tab], schema)
    counts = browse.run_browse("stage1", str(tmp_path / "browse.html"), **paths)
    assert counts == dict.fromkeys(browse.TABS, 0)
    assert [t["rows"] for t in page_data((tmp_path / "browse.html").read_text())] == [[]] * len(browse.TABS)
