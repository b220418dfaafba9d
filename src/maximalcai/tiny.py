"""Tiny random models and tokenizers built in seconds with no download: what the tests' fixtures and the
benchmarks' smoke runs load in place of a real model.

- ``build_tokenizer``: a byte-level BPE tokenizer trained on the repository's resources (its vocabulary
  follows those files), with Gemma-style or Qwen2.5-style special tokens and an optional chat template.
- ``build_tiny_model``: a random-weight Gemma 3 text model (4 query heads on 1 KV head, a 16-token sliding
  window, so the grouped attention and the sliding cache are exercised).
"""

from __future__ import annotations

import json
from pathlib import Path

from maximalcai.feedback.guard import HAZARDS

REPO = Path(__file__).resolve().parents[2]

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


def corpus() -> list[str]:
    """The tiny tokenizer's training text: the repository's resources and constitution, and the prompt headers."""
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
    tok.train_from_iterator(corpus(), trainer)
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


def gemma_style_tokenizer():
    return build_tokenizer(GEMMA_SPECIALS, "<bos>", "<eos>", "<pad>", "<unk>")


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


def pair_row(i: int, prompt: str, chosen: str, rejected: str, split: str = "train", **fields) -> dict:
    """A row of the ``pairs`` table for training tests and benchmarks: pair ``i`` with the given texts; ``fields``
    override the rest (decided_by, principle_id...)."""
    return {
        "pair_id": f"p{i}",
        "stage": "stage1",
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "instruction_id": f"i{i}",
        "chosen_id": f"c{i}",
        "rejected_id": f"r{i}",
        "comparison_id": f"k{i}",
        "kind": "responses",
        "principle_ids": ["helpfulness"],
        "soft_label": 0.7,
        "margin": 0.2,
        "chosen_safety": "safe",
        "rejected_safety": "safe",
        "safety_swapped": False,
        "decided_by": "labeller",
        "principle_id": "helpfulness",
        "mechanism": "model",
        "split": split,
        "constitution_hash": "h",
        **fields,
    }


def quick_training(section: dict, warmup: bool = False, **changes):
    """A stage's ``training`` section set for a run of seconds on a tiny model - one epoch, two pairs a step,
    no accumulation or warm-up steps, 64 tokens, a high learning rate, the SFT warm-up on or off for one epoch -
    with ``changes`` over that; typed (``training.settings.Training``). Tests and benchmarks train with it."""
    from maximalcai.config import deep_merge
    from maximalcai.training.settings import Training

    quick = {
        "num_train_epochs": 1,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "max_length": 64,
        "learning_rate": 1e-3,
        "warmup_steps": 0.0,
        "sft_warmup": {"enabled": warmup, "num_train_epochs": 1},
    }
    return Training.from_section(deep_merge(deep_merge(section, quick), changes))
