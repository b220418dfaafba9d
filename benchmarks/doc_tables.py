"""The tables in the docs that hold measured figures, generated from the results files they cite.

Each generated table sits between two markers that name how it is drawn and from which file:

    <!-- table: metrics benchmarks/results/cpu_full_stage1_written_metrics.json -->
    | metric | base | ... |
    <!-- end table -->

    python benchmarks/doc_tables.py          # redraw every marked table in README.md, docs/ and benchmarks/
    python benchmarks/doc_tables.py --check  # exit 1 naming each table that differs from its file

tests/test_docs.py runs the check, so a figure in a marked table cannot drift from its results file.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from ablations import results_table as ablations  # noqa: E402
from limits import workload_table  # noqa: E402
from metrics_table import indexed  # noqa: E402
from metrics_table import table as metrics_table  # noqa: E402

DOCS = ("README.md", "docs/*.md", "benchmarks/README.md", "benchmarks/results/*.md")
BLOCK = re.compile(r"<!-- table: (\w+) (\S+) -->\n(.*?)<!-- end table -->", re.S)


def headline(metrics: dict) -> str:
    """The stage against both baselines on the headline metrics, one short line each: what the README shows."""
    stage, means, diffs = indexed(metrics)
    lines = [
        f"| metric | base | base + examples | {stage} | vs base | vs base + examples |",
        "|---|---:|---:|---:|---|---|",
    ]
    for metric, label in LABELS.items():
        if (stage, metric) not in means:
            continue
        cells = [f"{means[(m, metric)]:.2f}" for m in ("base", "base_fewshot", stage)]
        cells += [diffs[(metric, b)]["verdict"] for b in ("base", "base_fewshot")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


LABELS = {
    "stop_rate": "stops by itself",
    "repeated_4gram_rate": "repeated 4-grams (lower is better)",
    "ifeval_strict": "IFEval strict",
    "redteam_refusal_rate": "declines red-team requests",
    "over_refusal_rate": "refuses benign requests (lower is better)",
    "helpful_refusal_rate": "refuses helpful prompts (lower is better)",
    "honesty_rate": "corrects false premises",
    "false_correction_rate": "corrects true premises (lower is better)",
}


def runs(named: dict[str, dict]) -> str:
    """Several runs' stage on the headline metrics, side by side: each cell the value and its verdicts against
    base and base_fewshot (+ better, - worse, = no measurable difference). For a recipe's history."""
    mark = {"better": "+", "worse": "-", "no measurable difference": "="}
    lines = ["| metric | " + " | ".join(named) + " |", "|---|" + "---:|" * len(named)]
    for metric, label in LABELS.items():
        cells = []
        for metrics in named.values():
            stage, means, diffs = indexed(metrics)
            if (stage, metric) not in means:
                cells.append("")
                continue
            verdicts = "".join(mark.get(diffs[(metric, b)]["verdict"], "?") for b in ("base", "base_fewshot"))
            cells.append(f"{means[(stage, metric)]:.2f} ({verdicts})")
        if any(cells):  # a metric none of the runs measured has no row
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def climb(metrics: dict) -> str:
    """A stage against the stage before it (its model wrote this stage's data) on the headline metrics: both
    values, the paired difference with its 95% interval, and the verdict. Does the stage climb?"""
    stage, means, diffs = indexed(metrics)
    previous = next((b for b in metrics["baselines"] if b.startswith("stage")), None)
    if previous is None:
        raise SystemExit(f"doc_tables: {stage}'s metrics compare it with no earlier stage (a climb needs stage 2 on)")
    lines = [
        f"| metric | {previous} | {stage} | {stage} - {previous} (95%) | verdict |",
        "|---|---:|---:|---|---|",
    ]
    for metric, label in LABELS.items():
        c = diffs.get((metric, previous))
        if c is None or (stage, metric) not in means:
            continue
        lines.append(
            f"| {label} | {means[(previous, metric)]:.3f} | {means[(stage, metric)]:.3f} | "
            f"{c['estimate']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] | {c['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def balance(result: dict) -> str:
    """Contrast pairs of one table with and without written over-refusals (benchmarks/contrast_balance.py):
    answering and refusing pairs, their ratio, and the requests' ratio that contrast.balance asked for."""
    asked = result["requests"]["answering"] / result["requests"]["refusing"]
    lines = [
        "| contrast pairs | answering | refusing | answering per refusing | benign requests with no pair |",
        "|---|---:|---:|---:|---:|",
        f"| requests (contrast.balance) | {result['requests']['answering']} | {result['requests']['refusing']} | "
        f"{asked:.2f} | |",
    ]
    ways = {
        "without_written_overrefusals": "before",
        "with_written_overrefusals": "written over-refusals",
        "with_written_overrefusals_capped": "written over-refusals, answering pairs capped (pairs.contrast_balance)",
    }
    for way, label in ways.items():
        if way not in result:
            continue
        side = result[way]
        counts = side["answer-the-question"]
        unpaired = counts["no_rejected"] + counts["no_chosen"] + counts.get("capped", 0)
        lines.append(
            f"| {label} | {side['answer_pairs']} | {side['refusal_pairs']} | {side['answer_per_refusal']:.2f} | "
            f"{unpaired} |"
        )
    return "\n".join(lines) + "\n"


def clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{rest:02d}" if minutes >= 60 else f"{minutes}:{rest:02d}"


def walls(named: dict[str, dict]) -> str:
    """Several timed runs (benchmarks/rule_times.py --json), one line each: where and when it ran, the whole
    command's wall time and peak memory, the sum of its jobs, and its slowest job."""
    lines = [
        "| run | machine | commit | date | wall (m:s) | peak RSS (GB) | sum of jobs (s) | slowest job (s) |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for name, run in named.items():
        slowest = max(run["jobs"], key=lambda job: job["seconds"])
        wall, rss = run.get("wall_seconds"), run.get("peak_rss_kb")  # None: not a timing (see its title)
        cells = [name, run["machine"], run["commit"], run["date"], clock(wall) if wall else "-"]
        cells += [f"{rss / 1e6:.1f}" if rss else "-", f"{run['sum_of_jobs_seconds']:,.0f}"]
        cells.append(f"{slowest['job']} {slowest['seconds']:,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def times(named: dict[str, dict]) -> str:
    """Timed runs' jobs side by side (benchmarks/rule_times.py --json): each job's wall seconds per run, the
    sum of jobs and the whole command; the last column the last run over the first where there are two."""
    names = list(named)
    order = list(dict.fromkeys(job["job"] for run in named.values() for job in run["jobs"]))
    seconds = {name: {job["job"]: job["seconds"] for job in run["jobs"]} for name, run in named.items()}
    ratio = len(names) == 2
    lines = ["| job | " + " | ".join(names) + (" | second / first |" if ratio else " |")]
    lines.append("|---|" + "---:|" * (len(names) + ratio))

    def row(label: str, values: list[float | None]) -> str:
        cells = [f"{v:,.1f}" if v is not None else "" for v in values]
        if ratio:
            cells.append(f"{values[1] / values[0]:.2f}" if values[0] and values[1] else "")
        return f"| {label} | " + " | ".join(cells) + " |"

    lines += [row(job, [seconds[name].get(job) for name in names]) for job in order]
    lines.append(row("**sum of jobs**", [run["sum_of_jobs_seconds"] for run in named.values()]))
    lines.append(row("**whole command**", [run.get("wall_seconds") for run in named.values()]))
    return "\n".join(lines) + "\n"


def dpo(result: dict) -> str:
    """benchmarks/dpo.py's variants of the DPO phase, each in its own process: time, steps/s against the first row
    at the same thread count (TRL's CPU defaults when all variants ran), peak memory, and (where recorded) the SFT
    warm-up and DPO together, the SFT phase alone, the weights and the final loss."""
    rows = result["results"]
    columns = {  # a recorded field -> (its column's label, how a value is shown)
        "sft_seconds": ("SFT time", "{:.1f} s"),
        "weights_dtype": ("base weights", "{}"),
        "keeps_freed_memory": ("keeps freed memory", "{}"),
        "final_loss": ("final loss", "{:.4f}"),
    }
    extra = [k for k in columns if any(k in r for r in rows)]
    warm = any(r.get("sft_examples") for r in rows)
    lines = [
        "| variant | threads | steps | DPO time | steps/s | vs the first row | peak RSS |"
        + (" SFT + DPO time, with the load |" if warm else "")
        + "".join(f" {columns[k][0]} |" for k in extra),
        "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * warm + "---|" * len(extra),
    ]
    for r in rows:
        ratio = f"{r['speedup_vs_trl_default']:.2f}x" if "speedup_vs_trl_default" in r else "1.00x"
        cells = [r["variant"], str(r["threads"]), str(r["steps"]), f"{r['dpo_seconds']:.1f} s"]
        cells += [f"{r['steps_per_s']:.4f}", ratio, f"{r['peak_rss_mb']} MB"]
        cells += [f"{r['wall_seconds_with_load']:.1f} s"] if warm else []
        cells += ["" if r.get(k) is None else columns[k][1].format(r[k]) for k in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def dry_run(named: dict[str, dict]) -> str:
    """benchmarks/dry_run.py's measurements side by side: a no-op call and its parts, in seconds."""
    parts = {
        "python": "Python's start (`python -c pass`)",
        "snakemake_import": "`import snakemake.cli`",
        "dry_run": "the whole `snakemake -n` call",
        "snakefile_seconds": "the Snakefile's top level, under cProfile",
        "profiled_seconds": "the call after Snakemake's imports, under cProfile",
    }
    runs = list(named.values())
    lines = ["| seconds | " + " | ".join(f"{n} ({r['commit']})" for n, r in named.items()) + " |"]
    lines.append("|---|" + "---:|" * len(runs))
    lines += [f"| {label} | " + " | ".join(f"{r[key]:.2f}" for r in runs) + " |" for key, label in parts.items()]
    return "\n".join(lines) + "\n"


def tokenizer_load(result: dict) -> str:
    """benchmarks/tokenizer_load.py: the base model's tokenizer loaded both ways, each in a fresh process."""
    means, runs = result["mean_seconds"], result["seconds"]
    lines = ["| load | runs | mean | vs AutoTokenizer |", "|---|---:|---:|---:|"]
    for key, label in (
        ("auto_tokenizer", "`AutoTokenizer.from_pretrained`"),
        ("load_tokenizer", "`models.load_tokenizer`"),
    ):
        ratio = means["auto_tokenizer"] / means[key]
        lines.append(f"| {label} | {len(runs[key])} | {means[key]:.2f} s | {ratio:.2f}x |")
    return "\n".join(lines) + "\n"


def honesty_kinds(result: dict) -> str:
    """benchmarks/honesty_kinds.py: how often each model's answer corrects, per kind of honesty prompt; each false
    kind beside its true control, where a correction is wrong."""
    from honesty_kinds import KINDS

    from maximalcai.evaluation.evaluate import HONESTY_CONTROLS

    models = list(result["models"])
    lines = ["| kind | should correct | " + " | ".join(models) + " |", "|---|---|" + "---:|" * len(models)]
    for kind in KINDS:
        cells = [result["models"][m].get(kind) for m in models]
        if not any(cells):
            continue
        shown = [f"{c['corrects']}/{c['n']} ({c['rate']:.2f})" if c else "" for c in cells]
        should = "no (control)" if kind in HONESTY_CONTROLS else "yes"
        lines.append(f"| {kind} | {should} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def refusals(result: dict) -> str:
    """benchmarks/refusals_in_data.py: refusals on each side of the pairs and in the SFT rows, per run."""
    from refusals_in_data import markdown

    return markdown(result["runs"], result["stage"]).split("\n\n", 1)[1]


def gpu_throughput(result: dict) -> str:
    """benchmarks/gpu_throughput.py's table of its last run (what ``--report`` prints)."""
    from gpu_throughput import report

    return report(result["runs"][-1]) + "\n"


def plan(cfg: dict) -> str:
    """The budget plan's table for a config (``snakemake plan``): computed from the config by the library, so a
    change of the config's counts or throughput figures, or of the plan's arithmetic, shows as a stale table."""
    from maximalcai.plan import build_plan, format_plan

    lines = format_plan(build_plan(cfg)).splitlines()
    return "\n".join(line for line in lines if line.startswith("|")) + "\n"


RENDERERS = {
    "metrics": metrics_table,
    "headline": headline,
    "runs": runs,
    "climb": climb,
    "balance": balance,
    "walls": walls,
    "times": times,
    "dpo": dpo,
    "limits": workload_table,
    "dry_run": dry_run,
    "ablations": ablations,
    "gpu_throughput": gpu_throughput,
    "honesty_kinds": honesty_kinds,
    "refusals": refusals,
    "tokenizer_load": tokenizer_load,
    "plan": plan,
}
SEVERAL = {"runs", "walls", "times", "dry_run"}  # kinds drawn from several files, joined by commas


def render(kind: str, source: str) -> str:
    """The table of ``kind`` from ``source``: one results file, or for the kinds in SEVERAL several joined by
    commas, each named by its file's stem."""
    if kind not in RENDERERS:
        raise SystemExit(f"doc_tables: unknown table kind {kind!r}; one of {', '.join(RENDERERS)}")
    if kind in SEVERAL:
        files = source.split(",")
        names = [Path(f).stem.removeprefix("cpu_full_").removesuffix("_metrics").removeprefix("times_") for f in files]
        return RENDERERS[kind](dict(zip(names, map(load, files), strict=True)))
    return RENDERERS[kind](load(source))


def load(source: str) -> dict:
    """A results file, or for a YAML source the config a ``--configfile`` run of it sees (the plan's tables)."""
    if source.endswith((".yaml", ".yml")):
        from maximalcai.config import load_workflow_config

        return load_workflow_config(REPO / source, REPO)
    return json.loads((REPO / source).read_text())


def docs() -> list[Path]:
    return sorted({path for pattern in DOCS for path in REPO.glob(pattern)})


def redraw(text: str) -> str:
    return BLOCK.sub(lambda m: f"<!-- table: {m[1]} {m[2]} -->\n{render(m[1], m[2])}<!-- end table -->", text)


def stale() -> list[str]:
    """'doc: kind source' for each marked table that differs from what its file gives."""
    return [
        f"{path.relative_to(REPO)}: {m[1]} {m[2]}"
        for path in docs()
        for m in BLOCK.finditer(path.read_text())
        if m[3] != render(m[1], m[2])
    ]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        differing = stale()
        for line in differing:
            print(f"stale table: {line} (redraw: python benchmarks/doc_tables.py)")
        return 1 if differing else 0
    for path in docs():
        text = path.read_text()
        if BLOCK.search(text):
            path.write_text(redraw(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
