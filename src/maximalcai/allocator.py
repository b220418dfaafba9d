"""How the jobs' processes allocate memory: glibc told to keep the memory it frees (``hardware.allocator``).

A CPU DPO step frees and reallocates the same large blocks many times a step (TRL's chunked log-prob kernel
makes a fresh 26 MB tile per 32k-token slice of the vocabulary). glibc serves blocks over its mmap threshold
(at most 32 MiB, adjusted as it goes) with a fresh mapping and returns them to the operating system on free,
so every such block page-faults again: ``aten::fill_`` was 10% of a DPO step. With the mmap threshold at
4 GiB and the trim threshold at 64 GiB, freed blocks stay in the process and are reused: 1.29x on the DPO
phase alone and 0.90x on the default run's wall time, for more peak memory (a third more over the whole
default run); the tables and metrics come out byte-identical: the allocator does not touch the
arithmetic (benchmarks/README.md, "hardware.allocator").

glibc reads these settings from the environment when a process starts, so the Snakefile puts them into its
own environment before any job starts, and every job inherits them (cluster jobs too: each reads the
Snakefile on its node). Setting only one of the two is worse than neither (the trim threshold alone fixes
the mmap threshold at 128 KiB: 0.69x), so a user's own ``MALLOC_*`` variables are left as they are. Each job
checks that the setting took effect (``keeps_freed_memory``): its manifest records it, its log warns if not.
"""

from __future__ import annotations

import ctypes
import os
import sys

KEEP_FREED = {"MALLOC_MMAP_THRESHOLD_": str(4 * 2**30), "MALLOC_TRIM_THRESHOLD_": str(64 * 2**30)}
PROBE_BYTES = 48 * 2**20  # over glibc's largest dynamic mmap threshold (32 MiB): mapped unless told otherwise


def job_environment(allocator: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables to add to the environment the jobs inherit: KEEP_FREED for ``keep_freed``, unless
    the environment already sets a ``MALLOC_*`` variable of its own (then nothing: the user decides)."""
    environ = os.environ if environ is None else environ
    if allocator != "keep_freed" or any(name.startswith("MALLOC_") for name in environ):
        return {}
    return dict(KEEP_FREED)


def keeps_freed_memory() -> bool | None:
    """Whether this process's malloc keeps large freed blocks (``hardware.allocator: keep_freed`` in effect):
    a 48 MiB block comes from the heap rather than a mapping of its own. None where that cannot be told
    (not Linux with glibc)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version"):
        return None  # musl and others: their own allocators, not these settings
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.restype, libc.free.argtypes = None, [ctypes.c_void_p]
    address = libc.malloc(PROBE_BYTES)
    if not address:
        return None
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if start <= address < end:
                    return len(fields) > 5 and fields[5] == "[heap]"
        return None
    finally:
        libc.free(address)


def allocator_warning(allocator: str, keeps_freed: bool | None) -> str | None:
    """A line for the job's log when ``allocator`` is ``keep_freed`` but this process does not keep freed
    memory (``keeps_freed`` False: a launcher that did not pass the environment on, or the user's own
    ``MALLOC_*`` settings)."""
    if allocator != "keep_freed" or keeps_freed is not False:
        return None
    own = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    why = f"the environment sets {own}" if own else "the job did not inherit the workflow's environment"
    return (
        f"hardware.allocator is keep_freed, but this job's malloc returns freed memory to the system ({why}); "
        f"CPU training runs about 1.3x slower. To keep freed memory, start the job with "
        + " ".join(f"{k}={v}" for k, v in KEEP_FREED.items())
        + "; to stop this check, set hardware.allocator: system."
    )
