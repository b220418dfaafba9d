"""The command-line trap of ``--forcerun``: it takes any number of values, so a target written after it is
read as one more thing to force, and Snakemake builds the default target (every stage) instead.

    snakemake --cores 1 --forcerun generate_responses results/stage1/responses.parquet     # plans all six stages
    snakemake --cores 1 --forcerun generate_responses -- results/stage1/responses.parquet  # plans stage 1's responses

``check_forcerun`` runs when the Snakefile is read, before any job (dry runs included): with no target named
and a ``--forcerun``/``-R`` value that is a file or a target rather than a rule that builds files, it stops
and prints the command the user most likely meant. Naming a target (``all`` for everything) skips it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from maximalcai.errors import ConfigError


def command_line_request(argv: Sequence[str] | None = None) -> tuple[set[str], set[str]] | None:
    """(targets, forcerun values) of the snakemake command line this process runs, parsed by Snakemake's own
    argument parser, or None when the process is not the snakemake command (the API, a test).

    The Snakefile is read before Snakemake hands it the DAG settings, so this is how the check can run in
    dry runs too. Cluster jobs name their targets, so the check never stops them.
    """
    argv = list(sys.argv if argv is None else argv)
    if not argv or not (Path(argv[0]).name == "snakemake" or argv[0].endswith("snakemake/__main__.py")):
        return None
    from snakemake.cli import get_argument_parser

    args, _ = get_argument_parser().parse_known_args(argv[1:])
    return set(args.targets or ()) | set(getattr(args, "target_jobs", None) or ()), set(args.forcerun or ())


def check_forcerun(targets: Iterable[str], forcerun: Iterable[str], building_rules: Iterable[str]) -> None:
    """Raise ConfigError when ``--forcerun`` swallowed what was meant as the target.

    ``building_rules``: names of the rules that produce files (target rules such as ``stage1_model`` have
    none, so forcing them does nothing).
    """
    targets, forcerun, building = set(targets), sorted(set(forcerun)), set(building_rules)
    if targets or not forcerun:
        return
    swallowed = [value for value in forcerun if value not in building]
    if not swallowed:
        return
    rules = [value for value in forcerun if value in building]
    forced = " ".join(rules or swallowed)
    corrected = f"snakemake --cores 1 --forcerun {forced} -- {' '.join(swallowed)}"
    raise ConfigError(
        f"--forcerun/-R was given {', '.join(swallowed)}, which {'is' if len(swallowed) == 1 else 'are'} not a rule "
        "that builds files, and no target was named: --forcerun takes every value up to the next option, so the "
        "target became one more thing to force and Snakemake would build the default target, every stage.\n"
        f"Put the target after `--`:\n    {corrected}\n"
        "(to force the rule for every stage on purpose, name the target: ... --forcerun RULE -- all)"
    )
