"""How a rule's job runs its library call: one channel in, one ending out.

Every script in workflow_scripts/ is two imports and one line::

    run_job(snakemake, run_response_shard)

``job_arguments`` passes the job's named inputs, outputs, params and wildcards to the library function as
keyword arguments, under the names the rule gives them. So a rule names its inputs, outputs and params as
the function names its parameters, and the function takes each setting it uses as an argument: what a rule's
``params:`` hold is exactly what its library call uses, and editing any of them reruns the job. The library
never sees the whole config. ``run_job`` then runs the call in the rule's log (``runlog.rule_log``) with
torch's threads set (``hardware.threads``), checks that the allocator setting took effect
(``hardware.allocator``, a warning in the log if not), times it, and writes the job's manifest: the rule's name
(``snakemake.rule``), its wildcards, the fields the function returned, the seconds, and the whole config with
package versions (``maximalcai.manifest``), the one place the whole config goes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import typing
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from maximalcai.allocator import allocator_warning, keeps_freed_memory
from maximalcai.errors import DiskFullError
from maximalcai.manifest import Timer, write_manifest
from maximalcai.runlog import rule_log

MANIFEST = "manifest"  # the output that run_job writes; the function does not take it


def job_arguments(snakemake, function: Callable) -> dict[str, Any]:
    """The keyword arguments of ``function`` for this job: its named inputs, outputs (less the manifest),
    params and wildcards (a wildcard the function annotates as int, such as a shard number, as an int; a
    config section it annotates with a typed class, such as ``training.settings.Training``, as that class,
    built by the class's ``from_section``)."""
    hints = typing.get_type_hints(function)
    wildcards = {k: int(v) if hints.get(k) is int else v for k, v in snakemake.wildcards.items()}
    params = {
        k: hints[k].from_section(v) if hasattr(hints.get(k), "from_section") else v
        for k, v in snakemake.params.items()
    }
    outputs = {k: v for k, v in snakemake.output.items() if k != MANIFEST}
    return {**dict(snakemake.input.items()), **outputs, **params, **wildcards}


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # what torch's thread pools start with


def set_threads(setting: int | str) -> int:
    """torch's intra-op threads: ``hardware.threads`` (auto: every core the job may use). Not the job's
    Snakemake threads: with ``--cores 1`` on a laptop those are 1, and a model job would leave the other cores
    idle while nothing else runs (model jobs ask for all of --cores, so they never run side by side).

    Set through the environment that OpenMP and MKL read when torch is imported, so a job that never uses
    torch (aggregates, pairs, reports) does not pay its import, most of such a job's start (benchmarks/README.md);
    where torch is already imported, directly as well. torch caps a count from the environment at the
    machine's cores (more threads than cores only slow a job down)."""
    from maximalcai.hardware import resolve_threads

    threads = resolve_threads(setting)
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    if (torch := sys.modules.get("torch")) is not None:
        torch.set_num_threads(threads)
    return threads


# What torch's writer (torch.save: checkpoints, optimizer states) says when the disk fills, with no errno:
# "basic_ios::clear: iostream error", "PytorchStreamWriter failed writing file", "[enforce fail at
# inline_container.cc:672] . unexpected pos" (torch 2.13 writing to /dev/full).
TORCH_WRITE_FAILURES = (
    "iostream error",
    "PytorchStreamWriter failed writing",
    "file write failed",
    "inline_container",
)
FULL_BELOW_BYTES = 64 * 2**20  # a write failed with less than this left: the disk is what stopped it


def free_bytes(path: str | Path) -> int | None:
    """Space left on the filesystem holding ``path`` (its nearest existing folder); None if unknown."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


@contextlib.contextmanager
def disk_full_named(outputs: Iterable[str]) -> Iterator[None]:
    """Turn a full disk, whichever library hit it, into one error that names the path, the space left and
    what to do: an ``OSError`` with ENOSPC or EDQUOT (its file, else the job's first output), or torch's
    writer failing (``basic_ios::clear: iostream error``) while the outputs' disk has under 64 MiB left."""
    outputs = list(outputs)
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = exc.filename or (outputs[0] if outputs else ".")
        raise disk_full(where, free_bytes(where), str(exc)) from exc
    except RuntimeError as exc:
        where = outputs[0] if outputs else "."
        left = free_bytes(where)
        if not any(s in str(exc) for s in TORCH_WRITE_FAILURES) or left is None or left >= FULL_BELOW_BYTES:
            raise
        raise disk_full(where, left, str(exc).splitlines()[0]) from exc


def disk_full(path: str | Path, left: int | None, cause: str) -> DiskFullError:
    space = f"{left / 2**20:.0f} MiB left" if left is not None else "space left unknown"
    return DiskFullError(
        f"no space left on the disk holding {path} ({space}; {cause}). Free space there (df -h "
        f"{Path(path).absolute().parent}), then run the same snakemake command again: finished jobs are kept, "
        "this job starts over, and train_dpo resumes from its last complete checkpoint."
    )


def run_job(snakemake, function: Callable[..., dict[str, Any] | None]) -> None:
    """Run ``function`` with the job's arguments; write the job's manifest with what it returns. A full disk
    stops the job with one error naming the path and the rerun (``disk_full_named``)."""
    arguments = job_arguments(snakemake, function)
    outputs = [str(v) for k, v in snakemake.output.items() if k != MANIFEST]
    with rule_log(snakemake.log[0] if snakemake.log else None) as log, disk_full_named(outputs):
        set_threads(snakemake.config["hardware"]["threads"])
        keeps_freed = keeps_freed_memory()
        if warning := allocator_warning(snakemake.config["hardware"]["allocator"], keeps_freed):
            log.warning(warning)
        with Timer() as timer:
            fields = function(**arguments) or {}
        manifest = snakemake.output.get(MANIFEST)
        if manifest:
            wildcards = {k: v for k, v in arguments.items() if k in snakemake.wildcards.keys()}
            timing = {"seconds": round(timer.seconds, 2), "keeps_freed_memory": keeps_freed}
            extra = {"rule": snakemake.rule, **wildcards, **fields, **timing}
            write_manifest(manifest, snakemake.config, extra)
