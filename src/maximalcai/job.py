"""How a rule's job runs its library call: one channel in, one ending out.

Every script in workflow_scripts/ is two imports and one line::

    run_job(snakemake, run_response_shard)

``job_arguments`` passes the job's named inputs, outputs, params and wildcards to the library function as
keyword arguments, under the names the rule gives them. So a rule names its inputs, outputs and params as
the function names its parameters, and the function takes each setting it uses as an argument: what a rule's
``params:`` hold is exactly what its library call uses, and editing any of them reruns the job. The library
never sees the whole config. ``run_job`` then runs the call in the rule's log (``runlog.rule_log``) with
torch's threads set (``hardware.threads``), times it, and writes the job's manifest: the rule's name
(``snakemake.rule``), its wildcards, the fields the function returned, the seconds, and the whole config with
package versions (``maximalcai.manifest``), the one place the whole config goes.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

from maximalcai.manifest import Timer, write_manifest
from maximalcai.runlog import rule_log

MANIFEST = "manifest"  # the output that run_job writes; the function does not take it


def job_arguments(snakemake, function: Callable) -> dict[str, Any]:
    """The keyword arguments of ``function`` for this job: its named inputs, outputs (less the manifest),
    params and wildcards (a wildcard the function annotates as int, such as a shard number, as an int)."""
    hints = typing.get_type_hints(function)
    wildcards = {k: int(v) if hints.get(k) is int else v for k, v in snakemake.wildcards.items()}
    outputs = {k: v for k, v in snakemake.output.items() if k != MANIFEST}
    return {**dict(snakemake.input.items()), **outputs, **dict(snakemake.params.items()), **wildcards}


def set_threads(setting: int | str) -> int:
    """torch's intra-op threads: ``hardware.threads`` (auto: every core the job may use). Not the job's
    Snakemake threads: with ``--cores 1`` on a laptop those are 1, and a model job would leave the other cores
    idle while nothing else runs (model jobs ask for all of --cores, so they never run side by side)."""
    import torch

    from maximalcai.hardware import resolve_threads

    threads = resolve_threads(setting)
    torch.set_num_threads(threads)
    return threads


def run_job(snakemake, function: Callable[..., dict[str, Any] | None]) -> None:
    """Run ``function`` with the job's arguments; write the job's manifest with what it returns."""
    arguments = job_arguments(snakemake, function)
    with rule_log(snakemake.log[0] if snakemake.log else None):
        set_threads(snakemake.config["hardware"]["threads"])
        with Timer() as timer:
            fields = function(**arguments) or {}
        manifest = snakemake.output.get(MANIFEST)
        if manifest:
            wildcards = {k: v for k, v in arguments.items() if k in snakemake.wildcards.keys()}
            extra = {"rule": snakemake.rule, **wildcards, **fields, "seconds": round(timer.seconds, 2)}
            write_manifest(manifest, snakemake.config, extra)
