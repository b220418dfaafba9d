"""Importing the base model from a local directory or the hub, and the errors on bad sources."""

import json

import pytest

from maximalcai import hardware, models
from maximalcai.errors import HardwareError, ModelSourceError


def test_import_from_a_local_checkpoint(tmp_path, tiny_model_dir):
    source_info = (tiny_model_dir / models.MODEL_INFO).read_text()
    info = models.import_base_model(
        models.BaseModelSource.from_section({"source": "local", "path": str(tiny_model_dir), "name": None}),
        tmp_path / "base",
    )
    assert (tiny_model_dir / models.MODEL_INFO).read_text() == source_info  # files are hard-linked: source untouched
    assert (tmp_path / "base" / "model.safetensors").is_file()
    assert info["name"] == tiny_model_dir.name and info["has_chat_template"] is False
    assert json.loads((tmp_path / "base" / models.MODEL_INFO).read_text()) == info
    assert models.model_name(tmp_path / "base") == tiny_model_dir.name
    assert models.model_name(tmp_path / "base", tmp_path / "stage1" / "adapter") == f"{tiny_model_dir.name}+stage1"
    assert not (tmp_path / ".base.partial").exists()


def test_import_records_a_chat_template(tmp_path, tiny_model_dir, qwen_style_tokenizer):
    import shutil

    source = tmp_path / "qwen-like"
    shutil.copytree(tiny_model_dir, source)
    qwen_style_tokenizer.save_pretrained(source)
    info = models.import_base_model(
        models.BaseModelSource.from_section({"source": "local", "path": str(source), "name": "qwen-like"}),
        tmp_path / "base",
    )
    assert info["has_chat_template"] is True and info["name"] == "qwen-like"


def test_tokenizers_not_checked_for_the_direct_load_take_autotokenizers_path(tmp_path, tiny_model_dir):
    """models.DIRECT_TOKENIZERS: only a class checked token for token (the embedded Gemma, tests/test_workflow.py)
    with nothing beyond tokenizer.json and plain settings is built straight from its file."""
    import shutil

    assert models._direct_tokenizer(tiny_model_dir) is None  # PreTrainedTokenizerFast: not in the set
    folder = tmp_path / "gemma-like"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, folder / name)
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    plain = {k: v for k, v in settings.items() if k.endswith("_token") or k == "model_max_length"}
    (folder / "tokenizer_config.json").write_text(json.dumps(plain | {"tokenizer_class": "GemmaTokenizer"}))
    direct = models._direct_tokenizer(folder)
    assert type(direct).__name__ == "GemmaTokenizer"
    assert direct.get_vocab() == models.load_tokenizer(folder).get_vocab()
    (folder / "tokenizer_config.json").write_text(json.dumps(plain | {"tokenizer_class": "GemmaTokenizer", "x": 1}))
    assert models._direct_tokenizer(folder) is None  # a setting the direct load does not pass on
    (folder / "tokenizer_config.json").write_text(json.dumps(plain | {"tokenizer_class": "GemmaTokenizer"}))
    (folder / "special_tokens_map.json").write_text("{}")
    assert models._direct_tokenizer(folder) is None  # a file AutoTokenizer would read


def test_bad_sources_say_what_to_fix(tmp_path, monkeypatch):
    with pytest.raises(ModelSourceError, match="neither a .gguf file nor a checkpoint directory"):
        models.import_base_model(
            models.BaseModelSource.from_section({"source": "local", "path": str(tmp_path), "name": None}),
            tmp_path / "base",
        )
    with pytest.raises(ModelSourceError, match="cannot import 'no_such_gguf_pkg'"):
        models.import_base_model(
            models.BaseModelSource.from_section(
                {"source": "gguf_package", "gguf_package": "no_such_gguf_pkg", "name": None}
            ),
            tmp_path / "b",
        )

    def offline(**kwargs):
        raise OSError("network unreachable")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    monkeypatch.setattr(models, "HUB_WAIT_S", 0.0)
    with pytest.raises(ModelSourceError, match="could not download 'Qwen/Qwen2.5-32B'.* after 3 tries.*source: local"):
        models.import_base_model(
            models.BaseModelSource.from_section(
                {"source": "hub", "hub_id": "Qwen/Qwen2.5-32B", "revision": None, "name": None}
            ),
            tmp_path / "c",
        )
    assert not (tmp_path / "c").exists() and not (tmp_path / ".c.partial").exists()
    with pytest.raises(ModelSourceError, match="no model there"):
        models.load_model(tmp_path / "nothing", None, "cpu")


def test_cuda_requests_fail_clearly_without_a_gpu():
    if hardware.cuda_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(HardwareError, match="hardware.device is 'cuda'"):
        hardware.resolve_device("cuda")
    with pytest.raises(HardwareError, match="trainer.backend asks for unsloth"):
        hardware.require_cuda("unsloth", "trainer.backend")
    assert hardware.resolve_device("auto") == "cpu"


def test_half_written_model_files_are_refused_where_they_are_read(tmp_path, tiny_model_dir):
    """Issue 29: a base checkpoint without weights was imported with exit 0, and an adapter without its weights
    failed with a hub-id validation error."""
    import shutil

    weightless = tmp_path / "weightless"
    shutil.copytree(tiny_model_dir, weightless)
    (weightless / "model.safetensors").unlink()
    with pytest.raises(ModelSourceError, match="has config and tokenizer but no weights"):
        models.import_base_model(
            models.BaseModelSource.from_section({"source": "local", "path": str(weightless), "name": None}),
            tmp_path / "base",
        )
    assert not (tmp_path / "base").exists()
    adapter = tmp_path / "results/stage1/adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    message = "adapter_model.safetensors missing.*snakemake --cores 1 --forcerun train_dpo -- .*results/stage1/adapter"
    with pytest.raises(ModelSourceError, match=message):
        models.load_model(tiny_model_dir, None, "cpu", adapter)
