"""Progress a person can watch: items done, tokens/s and an ETA for every long job.

Lines go to the ``maximalcai.progress`` logger, so they land in the rule's log as plain lines (no carriage
returns), and ``runlog.rule_log`` also shows them on the terminal when Snakemake runs in one. One line per
update, at most one every ``every`` seconds (plus the last):

    generate: 64/300 rows (21%), 1,911 tokens at 69.3 tok/s, elapsed 0:28, ETA 1:43
"""

from __future__ import annotations

import logging
import time
from typing import Any

logger = logging.getLogger("maximalcai.progress")


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Counts items (rows, pairs, steps) of one job and logs where it stands."""

    def __init__(self, label: str, total: int, unit: str = "rows", every: float = 10.0, done: int = 0) -> None:
        self.label, self.total, self.unit, self.every = label, total, unit, every
        self.done = self.resumed = done  # items done before this process started (a resumed job) set no pace
        self.tokens = 0
        self.start = time.perf_counter()
        self._last = float("-inf")

    def update(self, items: int, tokens: int = 0) -> None:
        self.done += items
        self.tokens += tokens
        now = time.perf_counter()
        if self.done >= self.total or now - self._last >= self.every:
            self._last = now
            logger.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = (now if now is not None else time.perf_counter()) - self.start
        parts = [
            f"{self.label}: {self.done:,}/{self.total:,} {self.unit} ({100 * self.done / max(self.total, 1):.0f}%)"
        ]
        if self.tokens:
            parts.append(f"{self.tokens:,} tokens at {self.tokens / max(elapsed, 1e-9):.1f} tok/s")
        parts.append(f"elapsed {clock(elapsed)}")
        if self.resumed < self.done < self.total:
            parts.append(f"ETA {clock(elapsed / (self.done - self.resumed) * (self.total - self.done))}")
        return ", ".join(parts)


class LogLines:
    """A file-like target for tqdm bars (vLLM's): each redraw becomes one plain log line, at most one every
    ``every`` seconds, instead of carriage-return noise in the rule's log."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._last = float("-inf")

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        now = time.perf_counter()
        if line and (now - self._last >= self.every or "100%" in line):
            self._last = now
            logger.info("%s", line)
        return len(text)

    def flush(self) -> None:
        pass


def trainer_callback(label: str, every: float = 10.0) -> Any:
    """A transformers TrainerCallback that logs optimizer steps done of the phase, with elapsed time and ETA."""
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        def __init__(self) -> None:
            self.progress: Progress | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.progress = Progress(label, state.max_steps, "steps", every, done=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.update(state.global_step - self.progress.done)

    return StepProgress()
