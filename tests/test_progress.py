"""Progress lines: items done, tokens/s and an ETA, as plain lines in the log."""

import logging

from maximalcai import progress


def test_progress_lines_count_rate_and_eta(caplog, monkeypatch):
    now = iter([0.0, 10.0, 11.0, 30.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(now))
    with caplog.at_level(logging.INFO, logger="maximalcai.progress"):
        bar = progress.Progress("generate (m)", 300, every=5.0)
        bar.update(100, tokens=1000)  # t=10: logged
        bar.update(50, tokens=500)  # t=11: within `every`, not logged
        bar.update(150, tokens=1500)  # t=30: the last one is always logged
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "generate (m): 100/300 rows (33%), 1,000 tokens at 100.0 tok/s, elapsed 0:10, ETA 0:20",
        "generate (m): 300/300 rows (100%), 3,000 tokens at 100.0 tok/s, elapsed 0:30",
    ]


def test_a_resumed_job_sets_its_pace_on_new_items_only(monkeypatch):
    now = iter([0.0, 60.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(now))
    bar = progress.Progress("dpo training", 100, "steps", done=50)
    bar.done = 60
    assert bar.line().endswith("elapsed 1:00, ETA 4:00")  # 10 steps a minute, 40 to go


def test_tqdm_bars_become_plain_log_lines(caplog):
    from tqdm import tqdm

    with caplog.at_level(logging.INFO, logger="maximalcai.progress"):
        for _ in tqdm(range(3), file=progress.LogLines(every=3600), desc="Processed prompts"):
            pass
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("Processed prompts:   0%") and lines[-1].startswith("Processed prompts: 100%")
    assert not any("\r" in line for line in lines)


def test_rule_logs_show_progress_on_a_terminal_and_only_progress(tmp_path, monkeypatch):
    import io
    import sys

    from maximalcai.runlog import rule_log

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "__stderr__", terminal)
    log = tmp_path / "logs/stage1/generate_responses/0.log"
    with rule_log(str(log)):
        logging.getLogger("maximalcai.generation").info("a detail for the log only")
        progress.Progress("generate (m)", 2).update(2, tokens=10)
    assert "a detail for the log only" in log.read_text() and "generate (m): 2/2 rows" in log.read_text()
    assert terminal.getvalue().startswith("  [") and "generate (m): 2/2 rows" in terminal.getvalue()
    assert "a detail" not in terminal.getvalue()
