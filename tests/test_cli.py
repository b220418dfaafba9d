"""The ``maximalcai`` command on the tiny model: generate gives the workflow backend's answers, chat streams
and keeps a multi-turn history, and every mistake names the fix."""

import io
import json
import shutil
import subprocess
import sys
import time

import pytest

from conftest import REPO
from maximalcai import cli, formats


@pytest.fixture()
def workdir(tmp_path, tiny_model_dir, monkeypatch):
    """A workflow folder with the tiny model imported as the base and a random LoRA adapter as stage 1."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    shutil.copytree(tiny_model_dir, tmp_path / "results/models/base")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(tmp_path / "results/stage1/adapter")
    (tmp_path / "config.yaml").write_text(
        (REPO / "config.yaml").read_text() + "\nhardware: {device: cpu, dtype: float32}\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_generate_gives_the_workflow_backends_answers(workdir, capsys, tiny_model_dir):
    import torch

    from maximalcai.backends import Sampling
    from maximalcai.backends.transformers_backend import TransformersBackend
    from maximalcai.reproducibility import derive_seed

    (workdir / "prompts.jsonl").write_text('{"id": "a", "prompt": "Name a color."}\n{"instruction": "Say hi."}\n')
    code, out, err = run(
        [
            "generate",
            "--stage",
            "stage1",
            "--prompts",
            "prompts.jsonl",
            "--prompt",
            "Count to three.",
            "--max-new-tokens",
            "12",
        ],
        capsys,
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == ["0", "a", "prompts-2"] and rows[0]["model"] == "tiny-gemma3+stage1"
    backend = TransformersBackend(
        workdir / "results/models/base",
        workdir / "results/stage1/adapter",
        device="cpu",
        dtype=torch.float32,
        batch_size=4,
        scoring_batch_size=4,
    )
    expected = backend.generate(
        [formats.prompt(r["prompt"]) for r in rows],
        Sampling(temperature=0.0, max_new_tokens=12),
        derive_seed(42, "eval", "generate"),
    )
    assert [r["response"] for r in rows] == [c.text for c in expected]  # what the evaluation would answer
    code, base, _ = run(
        [
            "generate",
            "--model",
            "base",
            "--prompt",
            "Count to three.",
            "--max-new-tokens",
            "12",
            "--out",
            "base.jsonl",
        ],
        capsys,
    )
    assert code == 0 and base == "" and json.loads((workdir / "base.jsonl").read_text())["model"] == "tiny-gemma3"


def test_chat_streams_and_keeps_the_history(workdir, capsys, monkeypatch):
    seen = []
    real = cli.stream_answer

    def spy(model, tokenizer, prompt, sampling, seed):
        seen.append(prompt)
        yield from real(model, tokenizer, prompt, sampling, seed)

    monkeypatch.setattr(cli, "stream_answer", spy)
    monkeypatch.setattr(sys, "stdin", io.StringIO("What is rain?\nWhy?\n/reset\nHello.\n/quit\nnever read\n"))
    code, out, err = run(["chat", "--stage", "stage1", "--max-new-tokens", "8"], capsys)
    assert code == 0, err
    assert out.count("assistant> ") == 3 and "(history cleared)" in out
    first_answer = out.split("assistant> ")[1].split("\n")[0].strip()
    assert seen[0] == formats.prompt("What is rain?")
    assert seen[1] == formats.prompt(
        formats.conversation(
            [
                {"role": "user", "content": "What is rain?"},
                {"role": "assistant", "content": first_answer},
                {"role": "user", "content": "Why?"},
            ]
        )
    )
    assert seen[2] == formats.prompt("Hello.")  # after /reset


def test_chat_leaves_out_the_oldest_messages_that_no_longer_fit(gemma_style_tokenizer):
    """Past the context a model answers garbage: chat drops the oldest exchanges first, and refuses a message
    that cannot fit alone."""
    messages = []
    for turn in range(6):
        messages += [{"role": "user", "content": f"question {turn} " * 40}, {"role": "assistant", "content": "ok"}]
    messages.append({"role": "user", "content": "last question"})
    full = len(gemma_style_tokenizer(formats.prompt(formats.conversation(messages)))["input_ids"])
    prompt, dropped = cli.fitting_prompt(messages, gemma_style_tokenizer, full + 10, 10)
    assert dropped == 0 and prompt == formats.prompt(formats.conversation(messages))
    prompt, dropped = cli.fitting_prompt(messages, gemma_style_tokenizer, full // 2, 10)
    assert dropped % 2 == 0 and 0 < dropped < len(messages)
    assert prompt == formats.prompt(formats.conversation(messages[dropped:]))
    assert len(gemma_style_tokenizer(prompt)["input_ids"]) + 10 <= full // 2
    with pytest.raises(cli.PromptTooLongError, match="does not fit the model's context of 5 tokens"):
        cli.fitting_prompt(messages, gemma_style_tokenizer, 5, 1)


def test_streamed_answer_is_cut_at_the_stop_strings(tiny_model_dir):
    from maximalcai import models
    from maximalcai.backends import Sampling

    model = models.load_model(tiny_model_dir, __import__("torch").float32, "cpu")
    tokenizer = models.load_tokenizer(tiny_model_dir)
    pieces = list(
        cli.stream_answer(
            model, tokenizer, formats.prompt("Name a color."), Sampling(temperature=0.0, max_new_tokens=40), 0
        )
    )
    text = "".join(pieces)
    assert not any(stop in text for stop in formats.STOP_STRINGS)
    ids = tokenizer(formats.prompt("Name a color."), return_tensors="pt")
    full = model.generate(**ids, max_new_tokens=40, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    raw = tokenizer.decode(full[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text == formats.cut_at_stop(raw)[0]  # the same greedy answer, cut where the workflow cuts


def test_a_stop_string_counts_only_in_the_answer_and_ends_generation(gemma_style_tokenizer):
    """The prompt ends in a newline; an answer that opens with two more is not at a stop (the workflow strips it), and
    generation stops soon after the answer reaches one."""
    import torch

    from maximalcai.backends import Sampling

    pieces = ["\n\n", "Blue", " is a", " color.", "\n\n\n", "### Instruction", "\nMore", "\nand more"]

    class Model:
        device = torch.device("cpu")
        emitted = 0

        def generate(self, input_ids, streamer, stopping_criteria=(), stop_strings=(), **options):
            sequence = prompt  # transformers' stop_strings match the end of the whole sequence, prompt included
            for piece in pieces:
                streamer.on_finalized_text(piece)
                sequence += piece
                self.emitted += 1
                time.sleep(0.05)  # a decoding step
                if any(sequence.endswith(stop) for stop in stop_strings):
                    break
                if any(criterion(input_ids, None).all() for criterion in stopping_criteria):
                    break
            streamer.on_finalized_text("", stream_end=True)

    model = Model()
    prompt = formats.prompt("Name a color.")
    text = "".join(cli.stream_answer(model, gemma_style_tokenizer, prompt, Sampling(temperature=0.0), 0))
    assert prompt.endswith("\n") and text == "Blue is a color."
    assert model.emitted < len(pieces)  # told to stop, not run to max_new_tokens


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "--stage", "stage2", "--prompt", "x"], "snakemake --cores 1 stage2_model"),
        (["generate", "--stage", "stage9", "--prompt", "x"], "not a stage of this config"),
        (["generate", "--model", "stage1", "--prompt", "x"], "a trained stage is --stage stageK"),
        (["generate", "--adapter", "nowhere", "--prompt", "x"], "results/stage1/adapter"),
        (["generate", "--prompt", "x"], "name one model"),
        (["generate", "--stage", "stage1"], "no prompts"),
        (["generate", "--stage", "stage1", "--prompts", "bad.jsonl"], "bad.jsonl:1: not a JSON object"),
        (["chat", "--stage", "stage1", "--configfile", "missing.yaml"], "config file not found"),
        (["generate", "--stage", "stage1", "--prompt", "word " * 9000], "context of 4,096 tokens with 128 new tokens"),
    ],
)
def test_mistakes_name_the_fix(workdir, capsys, argv, message):
    (workdir / "bad.jsonl").write_text("not json\n")
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err


def test_without_an_imported_base_model_it_says_how_to_build_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    code, _, err = run(["generate", "--model", "base", "--prompt", "x"], capsys)
    assert code == 2 and "snakemake --cores 1 results/models/base" in err


def test_a_folder_without_a_config_reads_the_workflows_own_as_the_snakefile_does(tmp_path, capsys, monkeypatch):
    """The container's /workspace, or any folder run with snakemake -s PATH/Snakefile: no config.yaml there, so the
    CLI reads the checkout's, and says what to build rather than that no config was found."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["generate", "--model", "base", "--prompt", "x"], capsys)
    assert code == 2 and "config file not found" not in err and "snakemake --cores 1 results/models/base" in err


def test_the_console_script_is_installed():
    from pathlib import Path

    script = Path(sys.executable).parent / "maximalcai"  # pip install -e . puts it beside the interpreter
    result = subprocess.run([str(script), "generate", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--prompts" in result.stdout


def test_help_is_plain_text():
    """`maximalcai --help` shows the module's first paragraph without its reStructuredText markup."""
    result = subprocess.run([sys.executable, "-m", "maximalcai.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "The maximalcai command" in result.stdout and "``" not in result.stdout


def test_an_empty_checkout_gets_every_fix_in_one_message_before_heavy_imports(tmp_path):
    """On a checkout with nothing built: the unknown stage first (a typo, whatever else is missing), else one
    message naming the stage and the base model and the one target that builds both, and the prompt file's
    problems beside it; all before torch is imported (a mistake costs well under a second, not 5 s)."""
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    (tmp_path / "latin1.jsonl").write_bytes('{"prompt": "café"}\n'.encode("latin-1"))
    probe = (
        "import sys; from maximalcai import cli; code = cli.main(sys.argv[1:]); "
        "print('torch imported' if 'torch' in sys.modules else 'torch not imported'); sys.exit(code)"
    )

    def run_cli(*argv):
        result = subprocess.run(
            [sys.executable, "-c", probe, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 2 and "torch not imported" in result.stdout, result.stdout + result.stderr
        return result.stderr

    err = run_cli("generate", "--stage", "stage9", "--prompt", "x")
    assert "not a stage of this config" in err and "base model" not in err
    err = run_cli("generate", "--stage", "stage1", "--prompt", "x")
    assert "stage1 has not been trained" in err and "base model is not imported either" in err
    assert err.strip().endswith("snakemake --cores 1 stage1_model") and err.count("\n") == 1
    err = run_cli("generate", "--stage", "stage1", "--prompt", "", "--prompts", "latin1.jsonl")
    assert "2 things to fix" in err and "stage1_model" in err
    assert "--prompt number 1 is empty" in err and "latin1.jsonl:1: not UTF-8 text" in err
    err = run_cli("generate", "--model", "base", "--prompts", "missing.jsonl")
    assert "results/models/base" in err and "--prompts missing.jsonl: no such file" in err
