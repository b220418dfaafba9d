"""The ``maximalcai`` command: talk to a trained stage, generate answers from it, publish it.

    maximalcai chat --stage stage1                      # interactive, streamed, multi-turn
    maximalcai generate --stage stage1 --prompt "Name three primary colors."
    maximalcai generate --model base --prompts prompts.jsonl --out answers.jsonl
    maximalcai push --stage stage1 --dataset-repo you/pairs --model-repo you/model   # HF_TOKEN from the environment
    maximalcai converter                                # fetch the export's GGUF converter ahead (air-gapped nodes)

It reads the workflow's config (``--configfile``; default the working directory's ``config.yaml``, else the
workflow's own, as the Snakefile does) in the workflow's working directory (``--directory``, default ``.``), so it
finds ``results/`` and the imported base model where the rules put them. Prompts are the project's zero-shot format
(``formats.prompt``), answers are cut at the same stop strings, and sampling is the evaluation's (greedy by
default): ``generate`` gives the answers the evaluation gives. A chat keeps its history in the stage-3 multi-turn
format (``formats.conversation``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from maximalcai import formats
from maximalcai.config import default_configfile, load_workflow_config
from maximalcai.errors import MaximalcaiError, PromptTooLongError
from maximalcai.preflight import check_resources

BASE_DIR = "results/models/base"


class CommandError(MaximalcaiError):
    """A command-line mistake, with the fix in its message."""


def check_stage(cfg: dict, stage: str) -> None:
    from maximalcai.config import stage_ids

    if stage not in stage_ids(cfg):
        raise CommandError(f"--stage {stage}: not a stage of this config; its stages: {', '.join(stage_ids(cfg))}")


def model_dirs(cfg: dict, stage: str | None, model: str | None, adapter: str | None) -> tuple[str, str | None]:
    """(base model directory, adapter directory or None) for ``--stage``, ``--model base`` or ``--adapter``.

    Checks the command line first, then the files, and says every missing piece in one message with the one
    command that builds them all (a stage's target imports the base model too)."""
    if sum(x is not None for x in (stage, model, adapter)) != 1:
        raise CommandError("name one model: --stage stageK (a trained stage), --model base, or --adapter DIR")
    if model is not None and model != "base":
        raise CommandError(f"--model {model}: only 'base' is a model name; a trained stage is --stage stageK")
    if stage is not None:
        check_stage(cfg, stage)
        adapter = f"results/{stage}/adapter"
    base_missing = not (Path(BASE_DIR) / "config.json").is_file()
    adapter_missing = adapter is not None and not (Path(adapter) / "adapter_config.json").is_file()
    if adapter_missing and stage is None:
        raise CommandError(
            f"--adapter {adapter}: no adapter_config.json there; point it at a stage's adapter folder, "
            "for example results/stage1/adapter"
            + (f" (and {Path(BASE_DIR).resolve()} is missing: run it from the workflow's folder)" * base_missing)
        )
    if adapter_missing:
        also = " and the base model is not imported either" if base_missing else ""
        raise CommandError(
            f"{stage} has not been trained yet ({Path(adapter).resolve()} is missing{also}); if the workflow's "
            f"results are elsewhere, give --directory; otherwise build {'both' if also else 'it'} with: "
            f"snakemake --cores 1 {stage}_model"
        )
    if base_missing:
        raise CommandError(
            f"{Path(BASE_DIR).resolve()}: the base model is not imported here; run it from the "
            "workflow's folder (--directory) or build it: snakemake --cores 1 results/models/base"
        )
    return BASE_DIR, adapter


def read_prompts(prompts: Sequence[str], path: str | None) -> list[dict]:
    """Prompts from ``--prompt`` values and a JSONL file (each line an object with "prompt", and optionally
    "id"; "instruction" is read as "prompt" too). Every mistake found is named at once."""
    rows, problems = [], []
    for i, text in enumerate(prompts):
        if not text.strip():
            problems.append(f"--prompt number {i + 1} is empty")
        rows.append({"id": str(i), "prompt": text})
    if path:
        lines: list[str] = []
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            problems.append(f"--prompts {path}: no such file")
        except UnicodeDecodeError as exc:
            line = Path(path).read_bytes()[: exc.start].count(b"\n") + 1
            problems.append(f"{path}:{line}: not UTF-8 text ({exc.reason}); save the file as UTF-8")
        except OSError as exc:
            problems.append(f"--prompts {path}: {exc.strerror}")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text = row.get("prompt", row.get("instruction"))
            except (json.JSONDecodeError, AttributeError) as exc:
                problems.append(f"{path}:{number}: not a JSON object ({exc})")
                continue
            if not isinstance(text, str) or not text.strip():
                problems.append(f"{path}:{number}: needs a non-empty string field 'prompt'")
                continue
            rows.append({"id": str(row.get("id", f"{Path(path).stem}-{number}")), "prompt": text})
    if not rows and not problems:
        problems.append("no prompts: give --prompt TEXT (repeatable) or --prompts FILE.jsonl")
    if problems:
        raise CommandError("\n  - ".join(["the prompts:", *problems[:10]]) if len(problems) > 1 else problems[0])
    return rows


def checked(*checks: Callable[[], Any]) -> list[Any]:
    """Run every check and raise one CommandError naming all their problems, in the order given (the order
    that fixes them), before anything heavy is imported."""
    results, problems = [], []
    for check in checks:
        try:
            results.append(check())
        except CommandError as exc:
            problems.append(str(exc))
    if len(problems) == 1:
        raise CommandError(problems[0])
    if problems:
        numbered = "\n".join(f"{i}. {p}" for i, p in enumerate(problems, start=1))
        raise CommandError(f"{len(problems)} things to fix, in this order:\n{numbered}")
    return results


def sampling_of(cfg: dict, args: argparse.Namespace):
    from maximalcai.backends import Sampling

    settings = dict(cfg["evaluation"]["sampling"])
    settings.update(
        {
            k: v
            for k, v in (("max_new_tokens", args.max_new_tokens), ("temperature", args.temperature))
            if v is not None
        }
    )
    return Sampling.from_section(settings)


def generate(cfg: dict, args: argparse.Namespace, out: TextIO) -> int:
    (base, adapter), rows = checked(
        lambda: model_dirs(cfg, args.stage, args.model, args.adapter),
        lambda: read_prompts(args.prompt or [], args.prompts),
    )
    from maximalcai.backends import Engine, open_backend
    from maximalcai.reproducibility import derive_seed

    backend = open_backend(Engine.of_config(cfg), base, adapter)
    completions = backend.generate(
        [formats.prompt(r["prompt"]) for r in rows],
        sampling_of(cfg, args),
        derive_seed(cfg["seed"], "eval", "generate"),
    )
    target = open(args.out, "w") if args.out else out
    try:
        for row, completion in zip(rows, completions):
            target.write(
                json.dumps(
                    {
                        **row,
                        "model": backend.model_name,
                        "response": completion.text,
                        "finish_reason": completion.finish_reason,
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    finally:
        if args.out:
            target.close()
    return 0


def stream_answer(model, tokenizer, prompt: str, sampling, seed: int) -> Iterator[str]:
    """The model's answer to ``prompt``, piece by piece as it is generated, cut at the format's stop strings
    (text that could be the start of a stop string is held back until it is not). A stop string counts only in the
    answer, as the workflow's backends cut it: transformers' own ``stop_strings`` also match across the prompt's
    last newline, so an answer opening with a blank line would end empty."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    cut = threading.Event()  # set by the reader below when the answer reaches a stop string

    class UntilCut(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), cut.is_set(), dtype=torch.bool, device=input_ids.device)

    torch.manual_seed(seed)
    inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    options = dict(
        max_new_tokens=sampling.max_new_tokens,
        repetition_penalty=sampling.repetition_penalty,
        stopping_criteria=StoppingCriteriaList([UntilCut()]),
        streamer=streamer,
        pad_token_id=tokenizer.pad_token_id,
    )
    if sampling.greedy:
        options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        options.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
    worker = threading.Thread(target=model.generate, kwargs={**inputs, **options}, daemon=True)
    worker.start()
    text, shown = "", 0
    hold = max(len(s) for s in formats.STOP_STRINGS) - 1
    for piece in streamer:
        text += piece
        if not shown:
            text = text.lstrip()  # as cut_at_stop strips
        answer, stopped = formats.cut_at_stop(text)
        if stopped:
            text = answer
            cut.set()
            break
        safe = len(text) - hold
        if safe > shown:
            yield text[shown:safe]
            shown = safe
    worker.join()
    final = text.rstrip() if len(text.rstrip()) >= shown else text[:shown]
    if len(final) > shown:
        yield final[shown:]


def fitting_prompt(messages: list[dict[str, str]], tokenizer, context: int, new_tokens: int) -> tuple[str, int]:
    """The chat prompt of the latest messages that fit ``context`` tokens with ``new_tokens`` to answer: the
    oldest exchanges are left out first. Returns (prompt, messages left out); PromptTooLongError when the last
    message alone does not fit."""
    for start in range(0, len(messages), 2):
        prompt = formats.prompt(formats.conversation(messages[start:]))
        tokens = len(tokenizer(prompt)["input_ids"])
        if tokens + new_tokens <= context:
            return prompt, start
    raise PromptTooLongError(
        f"the message has {tokens:,} tokens; with {new_tokens} new tokens it does not fit the model's context of "
        f"{context:,} tokens; shorten it"
    )


def chat(cfg: dict, args: argparse.Namespace, stdin: TextIO, out: TextIO) -> int:
    base, adapter = model_dirs(cfg, args.stage, args.model, args.adapter)
    from maximalcai import hardware, models
    from maximalcai.reproducibility import derive_seed

    device = hardware.resolve_device(cfg["hardware"]["device"])
    model = models.load_model(base, hardware.resolve_dtype(cfg["hardware"]["dtype"], device), device, adapter)
    tokenizer = models.load_tokenizer(base)
    sampling = sampling_of(cfg, args)
    interactive = stdin.isatty()
    context = model.config.get_text_config().max_position_embeddings
    name = models.model_name(base, adapter)
    out.write(f"{name}: chat in the project's format. /reset clears the history, /quit (or Ctrl-D) ends.\n")
    messages: list[dict[str, str]] = []
    while True:
        if interactive:
            out.write("\nyou> ")
            out.flush()
        line = stdin.readline()
        if not line or line.strip() in ("/quit", "/exit"):
            break
        text = line.strip()
        if not text:
            continue
        if text == "/reset":
            messages = []
            out.write("(history cleared)\n")
            continue
        messages.append({"role": "user", "content": text})
        try:
            prompt, dropped = fitting_prompt(messages, tokenizer, context, sampling.max_new_tokens)
        except PromptTooLongError as exc:
            messages.pop()
            out.write(f"(not sent: {exc})\n")
            continue
        if dropped:
            out.write(f"(the {dropped} oldest messages no longer fit the context and are left out)\n")
        out.write("assistant> ")
        answer = ""
        for piece in stream_answer(
            model, tokenizer, prompt, sampling, derive_seed(cfg["seed"], "chat", len(messages))
        ):
            answer += piece
            out.write(piece)
            out.flush()
        out.write("\n")
        messages.append({"role": "assistant", "content": answer.strip()})
    return 0


def push(cfg: dict, args: argparse.Namespace, out: TextIO) -> int:
    from maximalcai.publish import publish

    check_stage(cfg, args.stage)
    done = publish(cfg, args.stage, args.what, args.dataset_repo, args.model_repo, args.local, private=not args.public)
    out.write(json.dumps(done, indent=2) + "\n")
    return 0


CONFIGFILE_HELP = "the workflow's config (default: ./config.yaml, else the workflow's own)"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="maximalcai", description=__doc__.split("\n\n")[0].replace("``", ""))
    commands = top.add_subparsers(dest="command", required=True)
    for name, text in (
        ("chat", "talk to a model in the terminal, answers streamed"),
        ("generate", "answer prompts, one JSON line per answer"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        which = command.add_mutually_exclusive_group()
        which.add_argument("--stage", help="a trained stage, for example stage1 (its results/<stage>/adapter)")
        which.add_argument("--model", help="'base': the base model alone")
        which.add_argument("--adapter", help="a LoRA adapter folder on top of the base model")
        command.add_argument("--configfile", help=CONFIGFILE_HELP)
        command.add_argument("--directory", "-d", default=".", help="the workflow's working directory (default: .)")
        command.add_argument("--max-new-tokens", type=int, help="default: evaluation.sampling.max_new_tokens")
        command.add_argument("--temperature", type=float, help="default: evaluation.sampling.temperature (0: greedy)")
        if name == "generate":
            command.add_argument("--prompt", action="append", help="a prompt (repeatable)")
            command.add_argument("--prompts", help='a JSONL file of {"prompt": ...} objects')
            command.add_argument("--out", help="write JSONL here instead of standard output")
    command = commands.add_parser(
        "push",
        help="upload a stage's pairs and model to the Hugging Face Hub",
        description="Upload a stage's pairs (a DatasetDict: train, test) and its model, with "
        "cards; the token comes from HF_TOKEN. --local DIR writes them instead.",
    )
    command.add_argument("--stage", required=True, help="the stage, for example stage1")
    command.add_argument(
        "--what",
        choices=("adapter", "merged"),
        default="adapter",
        help="the LoRA adapter (default) or the merged export (snakemake --cores 1 stageK_export)",
    )
    command.add_argument("--dataset-repo", help="USER/NAME of the dataset repo for the pairs")
    command.add_argument("--model-repo", help="USER/NAME of the model repo")
    command.add_argument("--public", action="store_true", help="create public repos (default: private)")
    command.add_argument("--local", help="write the dataset (save_to_disk) and model folder here; upload nothing")
    command.add_argument("--configfile", help=CONFIGFILE_HELP)
    command.add_argument("--directory", "-d", default=".", help="the workflow's working directory (default: .)")
    command = commands.add_parser(
        "converter",
        help="fetch llama.cpp's GGUF converter into the cache the export reads",
        description="Fetch the GGUF converter the export runs (llama.cpp's, from the llama-cpp-python sdist: "
        "PyPI's file host, else pip download with pip's index settings) into the cache, so that nodes "
        "without a network find it there; --sdist unpacks a file downloaded elsewhere.",
    )
    command.add_argument("--sdist", type=Path, help="a llama_cpp_python-0.3.36.tar.gz from pip download")
    command.add_argument("--cache", type=Path, help="the cache folder (default: $XDG_CACHE_HOME/maximalcai)")
    return top


def converter(args: argparse.Namespace, out: TextIO) -> int:
    from maximalcai.converter import fetch

    script = fetch(args.cache, args.sdist)
    out.write(f"{script}\n(the export finds it there; or set export.llama_cpp: {script.parent})\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "converter":  # needs no workflow
        try:
            return converter(args, sys.stdout)
        except MaximalcaiError as exc:
            print(f"maximalcai converter: {exc}", file=sys.stderr)
            return 2
    try:
        os.chdir(args.directory)
    except OSError as exc:
        print(f"maximalcai: --directory {args.directory}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        configfile = args.configfile or default_configfile()
        cfg = check_resources(load_workflow_config(configfile), configfile)
        if args.command == "generate":
            return generate(cfg, args, sys.stdout)
        if args.command == "push":
            return push(cfg, args, sys.stdout)
        return chat(cfg, args, sys.stdin, sys.stdout)
    except MaximalcaiError as exc:
        print(f"maximalcai {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
