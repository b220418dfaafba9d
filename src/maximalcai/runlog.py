"""Logging for rule jobs: everything (our logger, library warnings, tracebacks) goes to the rule's log file.

``maximalcai.job.run_job`` runs each rule's library call inside ``rule_log(snakemake.log[0])``. A
MaximalcaiError is logged as a one-paragraph message (no stack trace) and re-raised so the job fails. Progress lines
(``maximalcai.progress``) also go to the terminal when Snakemake runs in one, prefixed with the job.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from maximalcai.errors import MaximalcaiError

logger = logging.getLogger("maximalcai")


@contextlib.contextmanager
def rule_log(path: str | Path | None) -> Iterator[logging.Logger]:
    """Send logging, stdout and stderr to ``path`` for the duration of a job."""
    if path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        yield logger
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1, encoding="utf-8") as handle:
        handler = logging.StreamHandler(handle)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        console = None
        if sys.__stderr__ is not None and sys.__stderr__.isatty():  # Snakemake in a terminal: progress there too
            console = logging.StreamHandler(sys.__stderr__)
            job = str(Path(path).with_suffix("")).removeprefix("logs/")
            console.setFormatter(logging.Formatter(f"  [{job}] %(message)s"))
            console.addFilter(lambda record: record.name == "maximalcai.progress")
            root.addHandler(console)
        with contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
            try:
                yield logger
            except MaximalcaiError as exc:
                logger.error("%s", exc)
                raise
            except BaseException:
                handle.write(traceback.format_exc())
                raise
            finally:
                root.removeHandler(handler)
                if console is not None:
                    root.removeHandler(console)
                sys.stdout.flush()
