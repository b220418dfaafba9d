"""Figures and pages for ``snakemake --report``: training curves, the pair funnel, eval metrics with
intervals, example generations, and the metrics of every stage side by side.

SVGs are written without timestamps or random ids, so the same inputs give the same files.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLORS = {"base": "#7f7f7f", "base_fewshot": "#2ca02c", "previous": "#9ecae1"}
STAGE_COLOR = "#d62728"
VERDICT_MARK = {
    "better": "▲ better",
    "worse": "▼ worse",
    "no measurable difference": "= no measurable difference",
    "measurably different": "≠ measurably different",
    "too few items": "? too few items",
}
PER_COMPARISON = ("win_vs_", "preference_accuracy_vs_", "shift_vs_", "judge_agreement_vs_")
# Metrics not on a 0-1 scale get a panel of their own: (metrics, axis label).
SCALES = (
    (("length_tokens",), "answer length (tokens generated)"),
    (("heldout_logp_margin",), "log p(chosen) - log p(rejected) on held-out pairs (nats)"),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "maximalcai", "svg.fonttype": "none", "font.size": 9})
    return plt


def _save(fig, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=Path(path).suffix.lstrip("."), metadata={"Date": None}, bbox_inches="tight")
    fig.clf()


def plot_training(rows: Sequence[dict[str, Any]], path: str | Path, title: str) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for phase, style in (("sft", "--"), ("dpo", "-")):
        steps = [r for r in rows if r["phase"] == phase]
        if not steps:
            continue
        x = [r["step"] for r in steps]
        axes[0].plot(x, [r["loss"] for r in steps], style, marker="o", ms=3, label=f"{phase} loss")
        if phase == "dpo":
            axes[1].plot(x, [r["rewards_margins"] for r in steps], "-", marker="o", ms=3, label="reward margin")
            axes[1].plot(x, [r["rewards_chosen"] for r in steps], ":", label="reward (chosen)")
            axes[1].plot(x, [r["rewards_rejected"] for r in steps], ":", label="reward (rejected)")
            axes[1].plot(x, [r["rewards_accuracies"] for r in steps], "-", alpha=0.4, label="reward accuracy")
    axes[0].set(title="loss", xlabel="optimizer step")
    axes[1].set(title="DPO implicit rewards", xlabel="optimizer step")
    axes[1].axhline(0, color="black", lw=0.5)
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)


def plot_funnel(rows: Sequence[dict[str, Any]], path: str | Path, title: str) -> None:
    plt = _pyplot()
    rows = list(rows)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1))
    labels = [f"{r['step']}. {r['filter']}" for r in rows]
    ax.barh(labels, [r["rows_out"] for r in rows], color="#4c72b0")
    ax.barh(labels, [r["dropped"] for r in rows], left=[r["rows_out"] for r in rows], color="#dd8452", label="dropped")
    for y, r in enumerate(rows):
        ax.text(r["rows_in"] + 0.3, y, f"{r['rows_in']} → {r['rows_out']}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="rows", title=title)
    ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)


def _draw_panel(ax, names: list[str], extra: Sequence[dict], metrics: dict[str, Any], summary: list[dict]) -> None:
    """One panel of plot_eval: each named metric's mean per model with its interval (a row per metric, the
    models side by side), then the ``extra`` comparisons' estimates; row labels carry the verdicts."""
    stage, models = metrics["stage"], metrics["models"]
    verdicts = {(c["metric"], c["baseline"]): c["verdict"] for c in metrics["comparisons"]}
    offsets = {m: (i - (len(models) - 1) / 2) * 0.2 for i, m in enumerate(models)}

    def label(name: str) -> str:
        marks = [
            f"{b}: {VERDICT_MARK[verdicts[(name, b)]].split()[0]}"
            for b in metrics["baselines"]
            if (name, b) in verdicts
        ]
        return f"{name}  ({', '.join(marks)})" if marks else name

    for y, name in enumerate(names):
        for s in (s for s in summary if s["metric"] == name and s["mean"] is not None):
            ax.errorbar(
                s["mean"],
                y + offsets[s["model"]],
                xerr=[[s["mean"] - s["ci_low"]], [s["ci_high"] - s["mean"]]],
                fmt="o",
                color=STAGE_COLOR if s["model"] == stage else COLORS.get(s["model"], COLORS["previous"]),
                ms=4,
                capsize=2,
                label=s["model"],
            )
    for y, c in enumerate(extra, start=len(names)):
        ax.errorbar(
            c["estimate"],
            y,
            xerr=[[c["estimate"] - c["ci_low"]], [c["ci_high"] - c["estimate"]]],
            fmt="s",
            color=STAGE_COLOR,
            ms=4,
            capsize=2,
        )
    labels = [label(n) for n in names]
    labels += [f"{c['metric']} vs {c['baseline']}  ({VERDICT_MARK[c['verdict']].split()[0]})" for c in extra]
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)


def plot_eval(metrics: dict[str, Any], path: str | Path) -> None:
    """Each metric's mean per model with its interval, and the verdicts against each baseline.

    Rates and shares (0-1) share one panel, with the win rate and preference accuracy against 0.5; length
    (tokens), the held-out margin (nats) and the shift from each baseline (nats per token) have their own.
    """
    plt = _pyplot()
    stage = metrics["stage"]
    summary = [s for s in metrics["summary"] if not s["metric"].startswith(PER_COMPARISON)]
    scaled = {m for names, _ in SCALES for m in names}
    rates_names = sorted({s["metric"] for s in summary} - scaled)
    vs_chance = [c for c in metrics["comparisons"] if c["kind"] == "rate against 0.5"]
    shifts = [c for c in metrics["comparisons"] if c["kind"] == "log-ratio against 0"]
    panels = [
        (rates_names, vs_chance, 0.5, "rate or share (mean over prompts; win and preference accuracy against 0.5)")
    ]
    for names, xlabel in SCALES:
        present = [n for n in names if any(s["metric"] == n for s in summary)]
        if present:
            panels.append((present, [], None, xlabel))
    if shifts:
        panels.append(
            ([], shifts, 0.0, f"shift: log p_{stage} - log p_baseline of {stage}'s answers (nats per token)")
        )
    heights = [len(names) + len(extra) + 0.6 for names, extra, _, _ in panels]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(9.5, 0.42 * sum(heights) + 1.6 * len(panels)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for ax, (names, extra, null, xlabel) in zip(axes[:, 0], panels):
        _draw_panel(ax, names, extra, metrics, summary)
        if null is not None:
            ax.axvline(null, color="black", lw=0.3, ls=":")
        ax.set(xlabel=xlabel)
    axes[0][0].set_xlim(-0.05, 1.05)
    handles, legend_labels = axes[0][0].get_legend_handles_labels()
    unique = dict(zip(legend_labels, handles))
    axes[0][0].legend(unique.values(), unique.keys(), fontsize=7, loc="lower left", bbox_to_anchor=(1.0, 0.0))
    fig.suptitle(
        f"{stage}: held-out evaluation, {int(metrics['confidence'] * 100)}% intervals (Wilson or t; "
        "verdicts from paired differences)\n"
        "(▲ better, ▼ worse, = no measurable difference, ≠ measurably different, ? too few items)"
    )
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def examples_html(generations: dict[str, Sequence[dict]], stage: str, path: str | Path, per_set: int = 4) -> None:
    """The first ``per_set`` prompts of each set (not picked by outcome) with every model's answer."""
    from maximalcai import verifiable

    by_model = {m: {r["prompt_id"]: r for r in rows} for m, rows in generations.items()}
    models = list(generations)

    def cell(row: dict | None) -> str:
        if row is None:
            return "<td></td>"
        rep = verifiable.repeated_ngram_rate(row["response"])
        refusal = ", <b>refuses</b>" if verifiable.is_refusal(row["response"]) else ""
        return (
            f"<td>{html.escape(row['response'])}<br><i>[{row['finish_reason']}, {row['num_tokens']} tokens, "
            f"repeated 4-grams {rep:.2f}{refusal}]</i></td>"
        )

    parts = [
        "<html><head><meta charset='utf-8'><style>",
        "body{font-family:sans-serif;font-size:13px} td,th{vertical-align:top;border:1px solid #ccc;padding:6px;"
        "white-space:pre-wrap;max-width:360px} table{border-collapse:collapse}",
        "</style></head><body>",
        f"<h3>Example answers (greedy): {', '.join(html.escape(m) for m in models)}</h3>",
        f"<p>The first {per_set} prompts of each eval set, whatever the outcome. <i>stop</i>/<i>eos</i>: the answer "
        "ended by itself; <i>length</i>: it ran into max_new_tokens; <b>refuses</b>: the eval's refusal check "
        "matched (red-team: the aim; borderline: an over-refusal). base_fewshot had pool examples in its prompt.</p>",
        "<table><tr><th>set</th><th>prompt</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in models) + "</tr>",
    ]
    shown: dict[str, int] = {}
    for row in generations[stage]:
        if shown.get(row["set"], 0) >= per_set:
            continue
        shown[row["set"]] = shown.get(row["set"], 0) + 1
        parts.append(
            f"<tr><td>{html.escape(row['set'])}</td><td>{html.escape(row['prompt'])}</td>"
            + "".join(cell(by_model[m].get(row["prompt_id"])) for m in models)
            + "</tr>"
        )
    parts.append("</table></body></html>")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(parts))


def plot_stages(all_metrics: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Every metric across stages (the base as stage 0), with intervals: where did a stage stop helping?"""
    plt = _pyplot()
    series: dict[str, dict[int, tuple[float, float, float]]] = {}
    for number, metrics in enumerate(all_metrics, start=1):
        for s in metrics["summary"]:
            if s["mean"] is None or s["metric"].startswith(PER_COMPARISON):
                continue
            x = 0 if s["model"] == "base" else number if s["model"] == metrics["stage"] else None
            if x is not None:
                series.setdefault(s["metric"], {})[x] = (s["mean"], s["ci_low"], s["ci_high"])
        for c in metrics["comparisons"]:
            if c["kind"] == "rate against 0.5" and c["baseline"] == "base":
                series.setdefault(f"{c['metric']} vs base", {})[number] = (c["estimate"], c["ci_low"], c["ci_high"])
            elif c["kind"] == "log-ratio against 0":
                against = "base" if c["baseline"] == "base" else "previous stage"
                series.setdefault(f"shift vs {against}", {})[number] = (c["estimate"], c["ci_low"], c["ci_high"])
    names = sorted(series)
    cols = 3
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        points = sorted(series[name].items())
        xs = [x for x, _ in points]
        means = [v[0] for _, v in points]
        ax.errorbar(
            xs,
            means,
            yerr=[[m - v[1] for m, (_, v) in zip(means, points)], [v[2] - m for m, (_, v) in zip(means, points)]],
            fmt="-o",
            ms=4,
            capsize=2,
            color=STAGE_COLOR,
        )
        ax.set_xticks(xs, ["base" if x == 0 else f"stage{x}" for x in xs], fontsize=7)
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle("Metrics across stages (mean and 95% interval)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def run_stage_report(
    stage: str,
    training_log: str,
    funnel: str,
    metrics: str,
    generations: Sequence[str],
    training_figure: str,
    funnel_figure: str,
    eval_figure: str,
    examples: str,
) -> None:
    """Rule stage_report: a stage's training curves, pair funnel, eval figure and example answers.
    ``generations``: the eval generations of the stage and its baselines but the previous stage, in the order
    of ``compared_models``."""
    from maximalcai import tables
    from maximalcai.evaluation.sets import compared_models

    plot_training(tables.read_table(training_log, "training_log"), training_figure, f"{stage}: training")
    plot_funnel(tables.read_table(funnel, "pairs_funnel"), funnel_figure, f"{stage}: from responses to pairs")
    plot_eval(json.loads(Path(metrics).read_text()), eval_figure)
    answers = {m: tables.read_table(p, "eval_generations") for m, p in zip(compared_models(stage, None), generations)}
    examples_html(answers, stage, examples)


def stages_table(all_metrics: Sequence[dict[str, Any]]) -> str:
    """Markdown: each stage's comparisons with the base and the previous stage."""
    lines = ["| stage | metric | vs | estimate | interval | verdict |", "|---|---|---|---:|---|---|"]
    for metrics in all_metrics:
        for c in metrics["comparisons"]:
            lines.append(
                f"| {metrics['stage']} | {c['metric']} | {c['baseline']} | {c['estimate']:.3f} | "
                f"[{c['ci_low']:.3f}, {c['ci_high']:.3f}] | {c['verdict']} |"
            )
    return "\n".join(lines) + "\n"


def run_stages_report(metrics: Sequence[str], figure: str, table: str) -> None:
    """Rule stages_report: every metric across stages, with intervals."""
    all_metrics = [json.loads(Path(p).read_text()) for p in metrics]
    plot_stages(all_metrics, figure)
    Path(table).write_text(stages_table(all_metrics))
