"""A trained stage as a model others can run: merged safetensors, a chat template, GGUF, Ollama, a card.

``results/<stage>/export/`` (rule ``export_model``, target ``stageK_export``) holds:

- the merged model (base + the stage's adapter, ``merge_and_unload``) as safetensors in the base model's
  dtype, its tokenizer and a ``generation_config.json`` (greedy, the format's stop strings);
- a chat template in the tokenizer config that renders exactly ``formats.prompt(formats.conversation(...))``,
  so ``tokenizer.apply_chat_template(messages, add_generation_prompt=True)`` gives the string the evaluation
  uses. A base tokenizer's own template (Qwen base ships ChatML) is replaced: the adapter never saw it. The
  workflow's base-model prompts still never touch a template (docs/BASE_MODEL_TRUTH.md);
- GGUF files (``export.gguf_types``, e.g. f16 and q8_0), written by llama.cpp's own ``convert_hf_to_gguf.py``:
  from ``export.llama_cpp`` (a llama.cpp checkout) or, by default, from the llama.cpp sources vendored in the
  ``llama-cpp-python`` sdist on PyPI (fetched once, sha256-checked, cached: ``maximalcai.converter``);
- an Ollama ``Modelfile`` (the template and stop strings);
- ``README.md``, a model card built with ``huggingface_hub``'s ``ModelCard``: base model id, training data,
  constitution hash, the evaluation's headline figures with their intervals, intended use and limits.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maximalcai import formats
from maximalcai.backends.base import Sampling
from maximalcai.cards import merged_model_card
from maximalcai.converter import llama_cpp_converter
from maximalcai.errors import ModelSourceError
from maximalcai.typed import Section

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Export(Section):
    """The config's ``export`` section, typed (keys and meaning: the config schema, docs/CONFIG.md)."""

    PATH = ("export",)
    STAGE = False

    gguf_types: tuple[str, ...]
    llama_cpp: str | None
    base_model_id: str | None


# formats.prompt(formats.conversation(messages)) as Jinja. A last assistant message (a training example) is
# rendered after the response header; no system turn exists in the format.
# The BOS token opens the string when the tokenizer adds one to a plain prompt (Gemma does, Qwen does not):
# apply_chat_template tokenizes without adding special tokens, so the ids match the evaluation's.
CHAT_TEMPLATE = (  # every literal is an expression: Jinja's whitespace control would eat bare newlines
    "{%- for m in messages -%}"
    "{%- if m['role'] not in ['user', 'assistant'] -%}"
    "{{ raise_exception('maximalcai models have no ' ~ m['role'] ~ ' turn: only user and assistant messages') }}"
    "{%- endif -%}{%- endfor -%}"
    "{%- set answer = messages[-1]['role'] == 'assistant' -%}"
    "{%- set turns = messages[:-1] if answer else messages -%}"
    "{%- if turns[-1]['role'] != 'user' -%}{{ raise_exception('the conversation must end with a user message') }}"
    "{%- endif -%}"
    "{{ bos_token if add_bos else '' }}{{ '### Instruction:\\n' }}"
    "{%- if turns | length > 1 -%}{{ 'Earlier in this conversation:' }}"
    "{%- for m in turns[:-1] -%}"
    "{{ '\\n' ~ ('User' if m['role'] == 'user' else 'Assistant') ~ ': ' ~ m['content'] | trim }}"
    "{%- endfor -%}{{ '\\n\\nUser: ' ~ turns[-1]['content'] | trim }}"
    "{%- else -%}{{ turns[-1]['content'] | trim }}{%- endif -%}"
    "{{ '\\n\\n' }}"
    "{%- if answer -%}{{ '### Response:\\n' ~ messages[-1]['content'] | trim ~ eos_token }}"
    "{%- elif add_generation_prompt -%}{{ '### Response:\\n' }}{%- endif -%}"
)

# Ollama's Go template for the same format (the $last idiom of Ollama's own templates).
OLLAMA_TEMPLATE = (
    "### Instruction:\n"
    "{{- if gt (len .Messages) 1 }}\nEarlier in this conversation:{{ end }}"
    "{{- range $i, $m := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 }}"
    "{{- if $last }}{{ if gt (len $.Messages) 1 }}\n\nUser: {{ else }}\n{{ end }}{{ $m.Content }}\n\n### Response:\n"
    '{{- else }}\n{{ if eq $m.Role "user" }}User: {{ else }}Assistant: {{ end }}{{ $m.Content }}{{ end }}'
    "{{- end }}"
)


def chat_template(tokenizer) -> str:
    """CHAT_TEMPLATE for ``tokenizer``: with its BOS token first when it adds one to a plain prompt."""
    ids = tokenizer("x")["input_ids"]
    adds_bos = tokenizer.bos_token_id is not None and bool(ids) and ids[0] == tokenizer.bos_token_id
    return ("{%- set add_bos = true -%}" if adds_bos else "{%- set add_bos = false -%}") + CHAT_TEMPLATE


def merge(base_dir: str | Path, adapter_dir: str | Path, out_dir: Path) -> dict[str, Any]:
    """Base + adapter merged (``merge_and_unload``) and saved as safetensors in the base model's dtype, with
    the tokenizer (carrying the project's chat template) and a greedy generation config with the stop strings."""
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from maximalcai.models import load_tokenizer

    dtype = getattr(AutoConfig.from_pretrained(base_dir), "dtype", None) or torch.float32
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    tokenizer = load_tokenizer(base_dir, padding_side="left")
    replaced = bool(tokenizer.chat_template)
    tokenizer.chat_template = chat_template(tokenizer)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=512,
        stop_strings=list(formats.STOP_STRINGS),
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "replaced_chat_template": replaced,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def convert_gguf(model_dir: Path, out_file: Path, outtype: str, converter: Path) -> None:
    """One GGUF file of ``model_dir`` by llama.cpp's converter (``outtype``: f32, f16, bf16, q8_0, ...)."""
    command = [sys.executable, str(converter), str(model_dir), "--outfile", str(out_file), "--outtype", outtype]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not out_file.is_file():
        tail = "\n".join(result.stderr.splitlines()[-15:])
        raise ModelSourceError(f"llama.cpp's converter failed on {model_dir} ({outtype}):\n{tail}")


def modelfile(gguf_name: str | None, sampling: Sampling) -> str:
    """An Ollama Modelfile: the GGUF (or the safetensors folder), the format's template and stop strings."""
    lines = [f"FROM ./{gguf_name}" if gguf_name else "FROM .", f'TEMPLATE """{OLLAMA_TEMPLATE}"""']
    lines += [f"PARAMETER stop {json.dumps(stop)}" for stop in formats.STOP_STRINGS]
    lines += [
        f"PARAMETER temperature {sampling.temperature}",
        f"PARAMETER num_predict {sampling.max_new_tokens}",
    ]
    return "\n".join(lines) + "\n"


def export_stage(
    export: Export,
    sampling: Sampling,
    stage: str,
    base_dir: str,
    adapter_dir: str,
    metrics_path: str | None,
    training_manifest: str | None,
    out_dir: str,
) -> dict[str, Any]:
    """Write ``out_dir`` whole, or nothing: built in a sibling folder, renamed at the end. ``export``: the
    config's export section; ``sampling``: the evaluation's (the Modelfile's defaults)."""
    from maximalcai.models import read_model_info

    out = Path(out_dir)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    merged = merge(base_dir, adapter_dir, tmp)
    files = []
    if export.gguf_types:
        converter = llama_cpp_converter(export.llama_cpp)
        for outtype in export.gguf_types:
            name = f"model-{outtype}.gguf"
            convert_gguf(tmp, tmp / name, outtype, converter)
            files.append(name)
    (tmp / "Modelfile").write_text(modelfile(files[-1] if files else None, sampling))
    metrics = json.loads(Path(metrics_path).read_text()) if metrics_path and Path(metrics_path).is_file() else {}
    training = (
        json.loads(Path(training_manifest).read_text())
        if training_manifest and Path(training_manifest).is_file()
        else {}
    )
    (tmp / "README.md").write_text(
        merged_model_card(export.base_model_id, stage, read_model_info(base_dir), metrics, training, files, merged)
    )
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return {"stage": stage, **merged, "gguf": files}


def run_export(
    export: Export,
    sampling: Sampling,
    stage: str,
    base_model: str,
    adapter: str,
    metrics: str,
    training: str,
    export_dir: str,
) -> dict[str, Any]:
    """Rule export_model: results/{stage}/export/ (merged model, chat template, GGUF, Modelfile, model card)."""
    result = export_stage(export, sampling, stage, base_model, adapter, metrics, training, export_dir)
    logger.info("exported %s to %s: %s", stage, export_dir, result)
    return result
