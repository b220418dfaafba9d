"""Kill -9 at random instants of a training job: does every rerun finish with the uninterrupted run's adapter?

A pod restart, an out-of-memory kill or a preempted Slurm job is a SIGKILL at an instant nobody chooses: in
the middle of an optimizer step, of a checkpoint save, of the final adapter's save or of the clean-up after
it. This script trains the tiny random model (``maximalcai.tiny``) through ``train_stage``, SFT warm-up and
DPO, with a checkpoint after every step, in a child process; kills it with SIGKILL after a random delay
(uniform over the uninterrupted run's training time, measured first); reruns it to the end, untouched; and
compares the adapter with the uninterrupted run's, tensor by tensor. Saves go through a disk that writes
each file in two halves with a pause between (``--slow-save``), so a share of the kills land in a save
with a half-written file on disk, as on a slow network volume.

    python benchmarks/kill_train.py --instants 20 --out benchmarks/results/kill_train.json

Each instant's row says when it was killed, what it left (a half-written checkpoint, a finished adapter...)
and whether the rerun's adapter is identical. Exit 1 if any rerun failed or differed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

SEED = 42


def pair_rows(count: int, kind: str) -> list[dict]:
    """Pairs (``kind`` "pairs") or SFT examples ("sft") for the tiny model: short, distinct, deterministic."""
    prompt = "### Instruction:\nQuestion {i}?\n\n### Response:\n"
    if kind == "sft":
        return [
            {
                "example_id": f"i{i}-r0",
                "instruction_id": f"i{i}",
                "source": "response",
                "prompt": prompt.format(i=i),
                "completion": f"A better answer number {i}.",
                "principle_id": "helpfulness",
                "mechanism": "checks",
            }
            for i in range(count)
        ]
    from maximalcai.tiny import pair_row

    split = ["train"] * (count - 1) + ["heldout"]
    texts = [(prompt.format(i=i), f"A helpful answer number {i}.", f"no {i} no no") for i in range(count)]
    return [pair_row(i, *texts[i], split[i]) for i in range(count)]


def prepare(folder: Path, pairs: int) -> None:
    """The tiny model and the tables every child trains on."""
    from maximalcai import tables
    from maximalcai.tiny import build_tiny_model, gemma_style_tokenizer

    tokenizer = gemma_style_tokenizer()
    build_tiny_model(tokenizer).save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    (folder / "model/maximalcai_model.json").write_text(json.dumps({"source": "local", "name": "tiny-gemma3"}))
    tables.write_table(pair_rows(pairs, "pairs"), folder / "pairs.parquet", "pairs")
    tables.write_table(pair_rows(pairs, "sft"), folder / "sft.parquet", "sft_examples")


def slow_disk(pause: float) -> None:
    """Every ``torch.save`` to a path (optimizer, scheduler, RNG state) writes half the file, waits, then the
    rest: a kill in between leaves a half-written file, as a slow volume would."""
    import torch

    save = torch.save

    def halves(obj, f, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)):
            return save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        with open(f, "wb") as out:
            out.write(data[: len(data) // 2])
            out.flush()
            time.sleep(pause)
            out.write(data[len(data) // 2 :])

    torch.save = halves


def child(folder: Path, run: Path, pause: float) -> None:
    """One training job: train_stage into ``run``/adapter, checkpoints in ``run``/checkpoints."""
    from maximalcai.config import load_config_file
    from maximalcai.hardware import Hardware
    from maximalcai.tiny import quick_training
    from maximalcai.training.dpo import train_stage
    from maximalcai.training.settings import Trainer

    slow_disk(pause)
    cfg = load_config_file(REPO / "config.yaml")
    cfg["hardware"].update(device="cpu", dtype="float32")
    cfg["trainer"].update(backend="trl", save_steps=1, cpu_dtype="float32")
    settings = quick_training(cfg["stages"][0]["training"], warmup=True)
    from trl import DPOTrainer, SFTTrainer  # noqa: F401  (imported before the mark: kills land in training)

    (run / "started").write_text(str(time.time()))
    train_stage(
        Hardware.from_section(cfg["hardware"]),
        Trainer.from_section(cfg["trainer"]),
        settings,
        "stage1",
        str(folder / "model"),
        str(folder / "pairs.parquet"),
        None,
        str(run / "adapter"),
        str(run / "checkpoints"),
        sft_path=str(folder / "sft.parquet"),
        seed=SEED,
    )
    (run / "finished").write_text(str(time.time()))


def spawn(folder: Path, run: Path, pause: float) -> subprocess.Popen:
    run.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, __file__, "--child", str(folder), str(run), "--slow-save", str(pause)]
    log = open(run / "log.txt", "a")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONHASHSEED": "0"})


def finish(process: subprocess.Popen, run: Path, timeout: float = 600) -> float:
    """Wait for a child to end; returns its training seconds (from the 'started' mark)."""
    if process.wait(timeout=timeout) != 0:
        log = (run / "log.txt").read_text()[-3000:]
        raise RuntimeError(f"training failed in {run}:\n{log}")
    return float((run / "finished").read_text()) - float((run / "started").read_text())


def left_behind(run: Path) -> str:
    """What a kill left on disk: the state a rerun has to cope with."""
    from maximalcai.training.checkpoints import complete_checkpoint

    if (run / "adapter").exists():
        return "adapter saved" + (", checkpoints being removed" if (run / "checkpoints").exists() else "")
    checkpoints = sorted((run / "checkpoints").glob("*/checkpoint-*"), key=lambda p: p.stat().st_mtime)
    if not checkpoints:
        return "no checkpoint yet"
    newest = checkpoints[-1]
    state = "complete" if complete_checkpoint(newest) else "half-written"
    return f"{state} {newest.parent.name}/{newest.name}"


def identical(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    first, second = load_file(str(a / "adapter_model.safetensors")), load_file(str(b / "adapter_model.safetensors"))
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instants", type=int, default=20, help="kills, each at its own random instant")
    parser.add_argument("--pairs", type=int, default=17, help="pairs and SFT examples (two per step)")
    parser.add_argument("--slow-save", type=float, default=0.05, help="pause in the middle of each saved file (s)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, help="results JSON")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, args.slow_save)
        return 0

    from maximalcai.manifest import result_stamp

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="kill-train-") as tmp:
        folder = Path(tmp)
        prepare(folder, args.pairs)
        reference = folder / "reference"
        seconds = finish(spawn(folder, reference, args.slow_save), reference)
        print(f"uninterrupted run: {seconds:.1f} s of training")
        rows = []
        for index in range(args.instants):
            run = folder / f"kill-{index}"
            process = spawn(folder, run, args.slow_save)
            while not (run / "started").exists() and process.poll() is None:
                time.sleep(0.01)
            delay = rng.uniform(0, seconds * 1.1)  # a tenth past the end: kills during the final clean-up too
            time.sleep(delay)
            killed = process.poll() is None
            if killed:
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
            state = left_behind(run) if killed else "finished before the kill"
            for mark in ("started", "finished"):
                (run / mark).unlink(missing_ok=True)
            try:
                finish(spawn(folder, run, args.slow_save), run)
                same = identical(reference / "adapter", run / "adapter")
                error = None
            except RuntimeError as exc:
                same, error = False, str(exc)[-500:]
            row = {"instant": index, "delay_s": round(delay, 3), "left": state, "identical": same, "error": error}
            rows.append(row)
            print(f"kill {index}: after {delay:.2f} s, left {state}: rerun {'identical' if same else 'DIFFERENT'}")
    failures = [r for r in rows if not r["identical"]]
    during_save = sum(r["left"].startswith("half-written") for r in rows)
    print(f"{len(rows) - len(failures)}/{len(rows)} reruns identical; {during_save} left a half-written checkpoint")
    if args.out:
        result = {
            "command": "python benchmarks/kill_train.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            **result_stamp(REPO),
            "training_seconds": round(seconds, 2),
            "kills": len(rows),
            "identical": len(rows) - len(failures),
            "half_written_checkpoints": during_save,
            "rows": rows,
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
