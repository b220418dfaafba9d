"""A stage's data in one self-contained HTML page: every instruction, answer, contrast answer, critique,
safety label, preference, pair, SFT example and the funnel, to page through, search and filter in a browser.

The page holds its rows as JSON and a few lines of JavaScript: no server, nothing fetched from the network, so it
opens from a cluster's results folder as well as from a laptop. Each table is a tab; a search box matches any
cell, and a column's filter keeps the rows with one value (the columns that have few values: ``decided_by``,
``label``, ``split``, ``principle_id`` ...). A pair says why it was kept (``decided_by``, its principles); the
funnel says why the others were dropped. Rows are drawn a page at a time, so thousands stay fast.

    snakemake --cores 1 stage1_browse        # results/stage1/browse.html
"""

from __future__ import annotations

import html
import json
from typing import Any

from maximalcai import tables
from maximalcai.manifest import write_text_atomic

# The tab of each table, in the order of the pipeline, and its schema in tables.TABLES.
TABS = {
    "instructions": "instructions",
    "responses": "responses",
    "contrast": "contrast",
    "critiques": "critiques",
    "safety": "safety",
    "preferences": "preferences",
    "pairs": "pairs",
    "funnel": "pairs_funnel",
    "sft": "sft_examples",
}
MAX_FILTER_VALUES = 40  # a column with at most this many distinct values gets a filter
PAGE_ROWS = 50


def cell(value: Any) -> str | int | float | bool | None:
    """A table value as the page shows it: lists and mappings as compact JSON text."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def table_data(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    columns = list(rows[0]) if rows else []
    values = [[cell(row[c]) for c in columns] for row in rows]
    filters = {}
    for index, column in enumerate(columns):
        distinct = {v for v in (r[index] for r in values) if not isinstance(v, float)}
        if 1 < len(distinct) <= MAX_FILTER_VALUES and all(isinstance(v, (str, bool, int)) for v in distinct):
            filters[column] = sorted(distinct, key=str)
    long = [c for i, c in enumerate(columns) if sum(len(str(r[i])) > 60 for r in values) * 4 > len(values)]
    return {"name": name, "columns": columns, "rows": values, "filters": filters, "wide": long}


def render(stage: str, data: dict[str, list[dict[str, Any]]]) -> str:
    """The page for ``stage``: ``data`` maps a tab name to its rows."""
    payload = json.dumps([table_data(name, rows) for name, rows in data.items()], ensure_ascii=False)
    payload = payload.replace("</", "<\\/")  # no "</script>" inside the script element
    return PAGE.replace("{{title}}", html.escape(f"maximalcai {stage}: data")).replace("{{data}}", payload)


def run_browse(
    stage: str,
    page: str,
    instructions: str,
    responses: str,
    critiques: str,
    safety: str,
    preferences: str,
    pairs: str,
    funnel: str,
    sft: str,
    contrast: str | None = None,
) -> dict[str, int]:
    """Rule browse_stage: ``page`` from the stage's tables (``contrast``: only when the stage makes one)."""
    paths = dict(instructions=instructions, responses=responses, contrast=contrast, critiques=critiques)
    paths |= dict(safety=safety, preferences=preferences, pairs=pairs, funnel=funnel, sft=sft)
    data = {
        tab: tables.read_table(paths[tab], schema, require_rows=False) for tab, schema in TABS.items() if paths[tab]
    }
    write_text_atomic(page, render(stage, data))
    return {tab: len(rows) for tab, rows in data.items()}


PAGE = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<title>{{title}}</title>
<style>
body{font:14px system-ui,sans-serif;margin:1em;color:#222}
nav button{margin:0 .3em .3em 0;padding:.3em .7em;border:1px solid #999;background:#f4f4f4;cursor:pointer}
nav button.on{background:#246;color:#fff}
#bar{margin:.5em 0;display:flex;flex-wrap:wrap;gap:.5em;align-items:center}
#bar input{width:22em;padding:.3em}
table{border-collapse:collapse}
select{max-width:18em}
th,td{border:1px solid #ccc;padding:.25em .4em;vertical-align:top;text-align:left;overflow-wrap:anywhere}
th{background:#eee;position:sticky;top:0}
td div{max-height:9em;max-width:32em;min-width:7em;overflow:auto;white-space:pre-wrap}
td.wide div{min-width:20em}
</style></head><body>
<h1>{{title}}</h1>
<nav id="tabs"></nav>
<div id="bar"><input id="search" type="search" placeholder="search every cell" aria-label="search">
<span id="filters"></span><span id="count"></span>
<button id="prev">previous</button><button id="next">next</button></div>
<table><thead id="head"></thead><tbody id="body"></tbody></table>
<script id="data" type="application/json">{{data}}</script>
<script>
"use strict";
const TABLES = JSON.parse(document.getElementById("data").textContent);
const PAGE = """
    + str(PAGE_ROWS)
    + """;
let table = null, shown = [], page = 0, chosen = {};
const $ = (id) => document.getElementById(id);
function text(v) { return v === null || v === undefined ? "" : String(v); }
function select(t) {
  table = t; chosen = {}; page = 0; $("search").value = "";
  for (const b of $("tabs").children) b.className = b.textContent.startsWith(t.name + " ") ? "on" : "";
  $("head").innerHTML = "";
  const tr = document.createElement("tr");
  for (const c of t.columns) { const th = document.createElement("th"); th.textContent = c; tr.appendChild(th); }
  $("head").appendChild(tr);
  $("filters").innerHTML = "";
  for (const [column, values] of Object.entries(t.filters)) {
    const s = document.createElement("select");
    s.dataset.column = column; s.setAttribute("aria-label", column);
    s.appendChild(new Option(column + ": any", ""));
    for (const v of values) s.appendChild(new Option(column + ": " + text(v), JSON.stringify(v)));
    s.onchange = () => { if (s.value) chosen[column] = JSON.parse(s.value); else delete chosen[column]; apply(); };
    $("filters").appendChild(s);
  }
  apply();
}
function apply() {
  const q = $("search").value.toLowerCase();
  const cols = Object.keys(chosen).map((c) => [table.columns.indexOf(c), chosen[c]]);
  shown = table.rows.filter((r) => cols.every(([i, v]) => r[i] === v)
    && (!q || r.some((v) => text(v).toLowerCase().includes(q))));
  page = 0; draw();
}
function draw() {
  const body = $("body"); body.innerHTML = "";
  const start = page * PAGE, rows = shown.slice(start, start + PAGE);
  const wide = table.columns.map((c) => table.wide.includes(c));
  for (const r of rows) {
    const tr = document.createElement("tr");
    r.forEach((v, i) => { const td = document.createElement("td"), d = document.createElement("div");
      if (wide[i]) td.className = "wide";
      d.textContent = text(v); td.appendChild(d); tr.appendChild(td); });
    body.appendChild(tr);
  }
  $("count").textContent = shown.length ? `rows ${start + 1}-${start + rows.length} of ${shown.length}`
    + (shown.length < table.rows.length ? ` (${table.rows.length} in all)` : "") : `no rows of ${table.rows.length}`;
  $("prev").disabled = page === 0; $("next").disabled = start + PAGE >= shown.length;
}
for (const t of TABLES) {
  const b = document.createElement("button"); b.textContent = `${t.name} (${t.rows.length})`;
  b.onclick = () => select(t); $("tabs").appendChild(b);
}
$("search").oninput = apply;
$("prev").onclick = () => { page--; draw(); };
$("next").onclick = () => { page++; draw(); };
if (TABLES.length) select(TABLES.find((t) => t.name === "pairs") || TABLES[0]);
</script></body></html>
"""
)
