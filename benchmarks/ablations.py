"""Ablations of the stage-1 recipe: which training signal makes stage 1 better than the base model?

Every variant starts from one finished `stage1_model` run of config/cpu-full.yaml (its instructions,
responses, safety and preference labels, and the base and base_fewshot evaluations, hard-linked) and reruns
what its settings change: build_pairs, train_dpo, stage 1's evaluation. Snakemake decides that from its
own records (`--rerun-triggers mtime params input`), so a variant costs its training and evaluation only.
Each row is stage 1 against the base model zero-shot and against base_fewshot, on the full held-out sets,
with the 95% interval of the paired difference; negative results stay in the table.

    snakemake --cores 2 stage1_model --configfile config/cpu-full.yaml --directory W      # the shared data
    python benchmarks/ablations.py --source W --out benchmarks/results/ablations.md       # every variant
    python benchmarks/ablations.py --source W --only dpo-labeller --out ...              # one of them
    python benchmarks/ablations.py --source W --only recipe --recorded recipe-variants=W2  # a variant run by hand

`--config default` does the same for the default config (config.yaml alone, demo counts): its source is a finished
`snakemake --cores 1 stage1_model` run, its variants are DEFAULT_VARIANTS, its table ablations_default.md.

The source must be run from this checkout with `--directory W`, as above: a variant resolves the workflow's
files from here, so a run made inside another clone records other paths (its constitution's paths are params,
and every job reruns), and a checkout cloned after the source run has newer files (every job reruns). Vary such
a run by hand in a hard-linked copy of it (`cp -al SRC W`, then real copies of W/.snakemake and
W/results/benchmarks; `snakemake --cores 2 --configfile config.yaml variant.yaml -- stage1_model` in W) and read
it with `--recorded NAME=W`; a dry run (`-n`) first shows which jobs rerun.

The `recipe` row is the source run itself (its wall time is the sum of its jobs, data included); the other
rows' times are their retraining and re-evaluation only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from maximalcai.evaluation.evaluate import HEADLINE as EVAL_HEADLINE

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"cpu-full": [REPO / "config.yaml", REPO / "config/cpu-full.yaml"], "default": [REPO / "config.yaml"]}
HEADLINE = (*EVAL_HEADLINE, "honesty_rate")  # the evaluate job's headline, and the honesty set's rate
# Outputs a variant rebuilds (everything downstream of the pairs); the rest is shared with the source run.
REBUILT = (
    "results/stage1/pairs.parquet",
    "results/stage1/pairs_funnel.parquet",
    "results/stage1/sft.parquet",
    "results/stage1/adapter",
    "results/stage1/training_log.parquet",
    "results/stage1/checkpoints",
    "results/stage1/eval",
    "results/stage1/report",
    "results/eval/stage1",
    "results/stage1/manifests/pairs.json",
    "results/stage1/manifests/training.json",
    "results/stage1/manifests/evaluation.json",
)

# No checks by code anywhere: the labeller decides the pairs, and SFT (where on) takes the few-shot answers as
# they are (no constraint variants, which code writes to meet a constraint).
LABELLER = {
    "preference": {"comparisons": ["responses"]},
    "pairs": {"verifiable": {"enabled": False}, "sft": {"sources": ["responses"]}},
}
VARIANTS: dict[str, tuple[str, dict]] = {
    "recipe": ("the recipe of config/cpu-full.yaml at the source run's commit", {}),
    # The levers of the constitution recipe (docs/CONSTITUTION.md), each switched off on its own, and both.
    "no-contrast": (
        "without labels by construction (no contrast pairs or SFT examples; on-policy negatives kept)",
        {"contrast": {"enabled": False}},
    ),
    "no-on-policy": (
        "without on-policy negatives (the responses regenerated without the greedy candidate; contrast kept)",
        {"responses": {"on_policy": False}, "contrast": {"on_policy": False}},
    ),
    "before-constitution": (
        "the recipe before the constitution reached the data: no contrast, no on-policy negatives",
        {"contrast": {"enabled": False}, "responses": {"on_policy": False}},
    ),
    "dpo-checks": (
        "DPO only, on the same check-decided pairs (no SFT)",
        {"training": {"sft_warmup": {"enabled": False}}},
    ),
    "dpo-labeller": (
        "DPO only, pairs labelled by the 270M model under the constitution (no checks, no SFT)",
        {**LABELLER, "training": {"sft_warmup": {"enabled": False}}},
    ),
    "sft-dpo-labeller": ("SFT on unfiltered few-shot answers, then DPO on labeller pairs (no checks)", LABELLER),
    "recipe-variants": (
        "the recipe, plus constraint variants - answers to unconstrained instructions put under "
        "3 new constraints each and rewritten by code to meet them - as SFT examples",
        {
            "pairs": {
                "sft": {
                    "sources": ["responses", "code_revisions", "constraint_variants"],
                    "variants_per_instruction": 3,
                }
            }
        },
    ),
}


def sft_epochs(n: int) -> dict:
    return {"training": {"sft_warmup": {"num_train_epochs": n}}}


# The default config's SFT warm-up length (docs/RECIPE.md): at demo counts (~55 examples, a third of them refusals
# in one template) six epochs taught the model to refuse benign requests, two lost the red-team refusals.
DEFAULT_VARIANTS: dict[str, tuple[str, dict]] = {
    "recipe": ("the default config at the source run's commit (SFT warm-up 4 epochs)", {}),
    "sft-6-epochs": ("SFT warm-up for 6 epochs (config.yaml's until 2026-12-06)", sft_epochs(6)),
    "sft-3-epochs": ("SFT warm-up for 3 epochs", sft_epochs(3)),
    "sft-2-epochs": ("SFT warm-up for 2 epochs", sft_epochs(2)),
    "contrast-8-seeds": (
        "8 seed requests per construction principle instead of 4 (twice the contrast data)",
        {"contrast": {"seeds_per_principle": 8}},
    ),
}
# The jobs a variant reruns, by benchmark file: a recorded variant's time is theirs.
REBUILT_JOBS = ("stage1/build_pairs", "stage1/train_dpo", "eval/stage1-", "stage1/evaluate", "stage1/stage_report")


def link_tree(source: Path, target: Path) -> None:
    """Hard-link ``source``'s results/ and Snakemake's records into ``target``, minus what a variant rebuilds."""
    for folder in ("results", ".snakemake/metadata"):
        src = source / folder
        if not src.is_dir():
            continue
        for path in src.rglob("*"):
            relative = path.relative_to(source)
            if path.is_dir() or any(str(relative).startswith(r) for r in REBUILT):
                continue
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            if folder == "results" and not relative.parts[1] == "benchmarks":
                os.link(path, destination)  # Snakemake replaces an output it rebuilds, so the source stays
            else:
                shutil.copy2(path, destination)  # Snakemake rewrites its records and benchmark files in place


def run_variant(
    name: str,
    overrides: dict,
    source: Path,
    workdir: Path,
    cores: int,
    rerun_triggers=("mtime", "params", "input"),
    configs: list[Path] = CONFIGS["cpu-full"],
) -> dict:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    link_tree(source, workdir)
    override = workdir / "variant.yaml"
    override.write_text(yaml.safe_dump({"stage_defaults": overrides}))
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        str(cores),
        "--rerun-triggers",
        *rerun_triggers,
        "--configfile",
        *map(str, configs),
        str(override),
        "--",
        "stage1_model",
    ]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    (workdir / "snakemake.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"variant {name} failed; see {workdir / 'snakemake.log'}")
    return {**recorded_row(name, workdir, jobs=()), "seconds": round(seconds)}  # its figures; its measured wall time


def recorded_row(name: str, workdir: Path, jobs: tuple[str, ...] | None = None) -> dict:
    """A finished run's row: its figures, and its time as the sum of its jobs' benchmark files (``jobs``: only
    the files whose path names one of them).

    The source run is the recipe (``jobs=None``: its whole run, data included). A variant run by hand in a copy
    of the source run with the variant's settings (``snakemake ... --rerun-triggers mtime params stage1_model``)
    is read with ``jobs=REBUILT_JOBS``: the jobs it reran."""
    seconds = 0.0
    for tsv in (workdir / "results/benchmarks").rglob("*.tsv"):
        if jobs is None or any(job in str(tsv) for job in jobs):
            lines = tsv.read_text().splitlines()
            seconds += float(lines[1].split("\t")[0]) if len(lines) > 1 else 0.0
    read = lambda path: json.loads((workdir / path).read_text())  # noqa: E731
    return slim_row(
        {
            "name": name,
            "seconds": round(seconds),
            "metrics": read("results/stage1/eval/metrics.json"),
            "pairs": read("results/stage1/manifests/pairs.json"),
            "training": read("results/stage1/manifests/training.json"),
        }
    )


RUN_RECORD = ("config", "constitution", "packages")  # each run's own copy: the variant's settings are VARIANTS'


def slim_row(row: dict) -> dict:
    """A row without the manifests' copies of the whole config, constitution and package list (two of each per
    row, three quarters of the results file); the commit (``git``) and machine (``hardware``) stay."""
    return {
        **row,
        **{part: {k: v for k, v in row[part].items() if k not in RUN_RECORD} for part in ("pairs", "training")},
    }


def cell(comparisons: list[dict], metric: str, baseline: str) -> str:
    for c in comparisons:
        if c["metric"] == metric and c["baseline"] == baseline:
            mark = {"better": " ▲", "worse": " ▼"}.get(c["verdict"], "")
            return f"{c['estimate']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]{mark}"
    return "n/a"


def results_table(done: dict[str, dict]) -> str:
    """The table of a results JSON's rows (by name), in its variants' order: VARIANTS, or DEFAULT_VARIANTS for the
    default config's (benchmarks/doc_tables.py's kind ``ablations``)."""
    variants = VARIANTS if all(name in VARIANTS for name in done) else DEFAULT_VARIANTS
    return table([done[name] for name in variants if name in done], variants)


def table(rows: list[dict], variants: dict[str, tuple[str, dict]] = VARIANTS) -> str:
    lines = []
    for baseline in ("base", "base_fewshot"):
        lines += [
            f"\n### stage 1 minus {baseline} (95% interval of the paired difference; ▲ better, ▼ worse)\n",
            "| variant | " + " | ".join(HEADLINE) + " | train pairs | SFT examples | wall time |",
            "|---|" + "---|" * (len(HEADLINE) + 3),
        ]
        for row in rows:
            comparisons = row["metrics"]["comparisons"]
            lines.append(
                f"| {row['name']}: {variants[row['name']][0]} | "
                + " | ".join(cell(comparisons, m, baseline) for m in HEADLINE)
                + f" | {row['training']['train_pairs']} | {row['training']['sft_examples']} | "
                f"{row['seconds'] // 60} min |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, help="a finished stage1_model run of --config")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu-full")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks/work/ablations")
    parser.add_argument("--only", nargs="*", choices=sorted({*VARIANTS, *DEFAULT_VARIANTS}))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--rerun-recipe", action="store_true", help="retrain the recipe row too (default: read it from the source run)"
    )
    parser.add_argument(
        "--recorded",
        nargs="*",
        default=[],
        metavar="NAME=WORKDIR",
        help="read these variants from workdirs where they were already run (no retraining)",
    )
    parser.add_argument(
        "--rerun-triggers",
        nargs="+",
        default=["mtime", "params", "input"],
        help="Snakemake's; drop 'input' for a source run recorded before config paths became relative "
        "(its records hold absolute input paths, so every job would look changed)",
    )
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/ablations.md (ablations_default.md)")
    parser.add_argument("--table-only", action="store_true", help="rewrite --out from its results JSON, run nothing")
    args = parser.parse_args(argv)
    if args.source is None and not args.table_only:
        parser.error("--source W (a finished stage1_model run) is needed, unless --table-only")
    variants = VARIANTS if args.config == "cpu-full" else DEFAULT_VARIANTS
    suffix = "" if args.config == "cpu-full" else f"_{args.config}"
    out = args.out or REPO / f"benchmarks/results/ablations{suffix}.md"
    only = args.only or list(variants)
    unknown = [name for name in [*only, *(item.split("=", 1)[0] for item in args.recorded)] if name not in variants]
    if unknown:
        names = ", ".join(variants)
        raise SystemExit(f"not a variant of --config {args.config}: {', '.join(unknown)}; variants: {names}")
    results = out.with_suffix(".json")
    done = json.loads(results.read_text()) if results.is_file() else {}
    recorded = dict(item.split("=", 1) for item in args.recorded)
    for name, workdir in recorded.items():
        done[name] = recorded_row(name, Path(workdir), REBUILT_JOBS)
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(done, indent=1))
    for name in [n for n in only if n not in recorded and not args.table_only]:
        print(f"variant {name}: {variants[name][0]}", flush=True)
        if name == "recipe" and not args.rerun_recipe:
            done[name] = recorded_row(name, args.source)  # the source run is the recipe (its whole run's time)
        else:
            done[name] = run_variant(
                name,
                variants[name][1],
                args.source,
                args.work / args.config / name,
                args.cores,
                args.rerun_triggers,
                CONFIGS[args.config],
            )
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(done, indent=1))
    text = render(done, args.config, results)
    out.write_text(text)
    print(text)


def render(done: dict[str, dict], config_name: str, results: Path) -> str:
    """The markdown results file of ``done`` (the results JSON's rows, by name); its table is marked for
    benchmarks/doc_tables.py, so tests/test_docs.py fails if it drifts from ``results``."""
    config = "config/cpu-full.yaml" if config_name == "cpu-full" else "the default config (config.yaml)"
    source = results.resolve().relative_to(REPO) if results.resolve().is_relative_to(REPO) else results
    return (
        f"# Stage-1 ablations on {config}\n\n"
        f"`python benchmarks/ablations.py --config {config_name} --source W` (see its docstring); one finished run's "
        "data, each variant's training and evaluation measured on this machine. Earlier runs that built "
        "the recipe are in docs/RECIPE.md; "
        "rows not yet run (`--only NAME`) are missing, not lost; n/a: a metric the row's evaluation did not have yet. "
        "Wall time: the `recipe` row's is "
        "its whole run, data included; the other rows' are their retraining and evaluation only "
        "(docs/RECIPE.md says which ran beside other work). Rewrite it from its JSON without running anything: "
        f"`--table-only`.\n\n<!-- table: ablations {source} -->\n{results_table(done)}<!-- end table -->\n"
    )


if __name__ == "__main__":
    main()
