"""Shared fixtures: a tiny random Gemma-3-shaped model and tokenizers built in seconds, no downloads.

- ``tiny_model_dir``: a 2-layer Gemma 3 text model (4 query heads on 1 KV head, a 16-token sliding window,
  so the grouped attention and the sliding cache are exercised) with a byte-level BPE tokenizer trained on
  our resources, saved like an imported base model (``maximalcai_model.json`` included).
- ``qwen_style_tokenizer``: a tokenizer that carries a Qwen2.5-style chat template and its control tokens,
  the situation docs/BASE_MODEL_TRUTH.md is about (the embedded Gemma GGUF has no template).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from maximalcai.feedback.guard import HAZARDS

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


# Llama Guard 3's prompt layout (task, categories, conversation, instructions), as a Jinja chat template.
LLAMA_GUARD_TEMPLATE = (
    "{{ bos_token }}<|start_header_id|>user<|end_header_id|>\n\n"
    "Task: Check if there is unsafe content in 'Agent' messages in conversations according our safety policy "
    "with the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n"
    + "".join(f"{code}: {name}.\n" for code, name in HAZARDS.items())
    + "<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n"
    "{% for message in messages %}{% if message['role'] == 'user' %}User: {% else %}Agent: {% endif %}"
    "{{ message['content'] }}\n\n{% endfor %}<END CONVERSATION>\n\n"
    "Provide your safety assessment for ONLY THE LAST Agent message in the above conversation:\n"
    " - First line must read 'safe' or 'unsafe'.\n"
    " - If unsafe, a second line must include a comma-separated list of violated categories."
    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
)


def _corpus() -> list[str]:
    texts = []
    for path in sorted((REPO / "resources").rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            texts.extend(str(v) for v in json.loads(line).values() if isinstance(v, str))
    texts.append((REPO / "constitution.yaml").read_text())
    texts += ["### Instruction:\n", "### Response:\n", "### Critique:\n", "### Revision:\n"]
    return texts


def build_tokenizer(specials: list[str], bos: str | None, eos: str, pad: str, unk: str | None, template=None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token=unk,
        additional_special_tokens=[s for s in specials if s not in {bos, eos, pad, unk}],
    )
    fast.padding_side = "left"
    if template:
        fast.chat_template = template
    return fast


@pytest.fixture(scope="session")
def gemma_style_tokenizer():
    return build_tokenizer(GEMMA_SPECIALS, "<bos>", "<eos>", "<pad>", "<unk>")


@pytest.fixture(scope="session")
def qwen_style_tokenizer():
    return build_tokenizer(QWEN_SPECIALS, None, "<|endoftext|>", "<|endoftext|>", None, QWEN_TEMPLATE)


def build_tiny_model(tokenizer, seed: int = 0, **sizes):
    """A random-weight Gemma 3 with the tokenizer's vocabulary; ``sizes`` override the config's dimensions."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    dimensions = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=1, head_dim=8)
    dimensions.update(sizes)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        num_hidden_layers=2,
        sliding_window=16,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=4096,
        query_pre_attn_scalar=dimensions["head_dim"],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **dimensions,
    )
    model = Gemma3ForCausalLM(config)
    with torch.no_grad():  # larger logits than the default init, so sampling is not uniform noise
        model.lm_head.weight.mul_(20)
    return model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, gemma_style_tokenizer):
    folder = tmp_path_factory.mktemp("tiny-model")
    build_tiny_model(gemma_style_tokenizer).save_pretrained(folder)
    gemma_style_tokenizer.save_pretrained(folder)
    (folder / "maximalcai_model.json").write_text(json.dumps({"source": "local", "name": "tiny-gemma3"}))
    return folder


@pytest.fixture()
def tiny_backend(tiny_model_dir):
    import torch

    from maximalcai.backends.transformers_backend import TransformersBackend

    return TransformersBackend(tiny_model_dir, device="cpu", dtype=torch.float32, batch_size=4, scoring_batch_size=3)


@pytest.fixture(scope="session")
def default_config():
    from maximalcai.config import load_config_file

    return load_config_file(REPO / "config.yaml")
