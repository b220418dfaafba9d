"""The conversation format, few-shot prompts, and the chat-template contamination check."""

import random

import pytest

from conftest import REPO
from maximalcai import formats
from maximalcai.backends import Sampling
from maximalcai.errors import ChatTemplateLeakError, ResourceError
from maximalcai.prompting import (
    ChatTokenCheck,
    assert_plain_prompts,
    instruction_prompt,
    load_pool,
    response_prompt,
    sample_examples,
)

POOL = REPO / "resources/pools/stage1_explicit.jsonl"


def test_cut_at_stop_cuts_at_the_earliest_header():
    text, hit = formats.cut_at_stop("Paris.\n\n### Instruction:\nWhat is 2+2?")
    assert (text, hit) == ("Paris.", True)
    assert formats.cut_at_stop("no stop here ") == ("no stop here", False)


def test_prompt_is_the_zero_shot_block():
    assert formats.prompt("Say hi.") == "### Instruction:\nSay hi.\n\n### Response:\n"


def test_fewshot_prompts_are_split_into_shared_prefix_and_target():
    pool = load_pool(POOL)
    examples = sample_examples(pool, 3, random.Random(42))
    prefix, suffix = response_prompt(examples, "Name a fruit.")
    assert prefix.count(formats.INSTRUCTION) == 3 and prefix.count(formats.RESPONSE) == 3
    assert suffix == formats.prompt("Name a fruit.")
    prefix, suffix = instruction_prompt(examples)
    assert formats.RESPONSE not in prefix and suffix == "### Instruction:\n"


def test_sampling_examples_is_seeded():
    pool = load_pool(POOL)
    a = [e.id for e in sample_examples(pool, 4, random.Random(7))]
    b = [e.id for e in sample_examples(pool, 4, random.Random(7))]
    assert a == b and len(set(a)) == 4


def test_pool_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "pool.jsonl"
    bad.write_text('{"id": "a", "instruction": "x", "response": "y"}\n{"id": "b", "instruction": ""}\n')
    with pytest.raises(ResourceError, match=r"pool.jsonl:2: field 'instruction' is missing, empty"):
        load_pool(bad)
    bad.write_text('{"id": "a", "instruction": "x", "response": "y"}\nnot json\n')
    with pytest.raises(ResourceError, match=r"pool.jsonl:2: not valid JSON"):
        load_pool(bad)
    # issue 29: invalid UTF-8 and chat-template tokens, named with the file and line at start
    bad.write_bytes(b'{"id": "a", "instruction": "x", "response": "y"}\n{"id": "b", "instruction": "\xff"}\n')
    with pytest.raises(ResourceError, match=r"pool.jsonl:2: not UTF-8"):
        load_pool(bad)
    bad.write_text('{"id": "a", "instruction": "x", "response": "<|im_start|>assistant y"}\n')
    with pytest.raises(ResourceError, match=r"pool.jsonl:1: chat-template token\(s\) <\|im_start\|>"):
        load_pool(bad)


def test_check_fires_on_a_qwen_chat_template(qwen_style_tokenizer):
    """The quirk in docs/BASE_MODEL_TRUTH.md: a base tokenizer that ships a chat template."""
    templated = qwen_style_tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name a fruit."}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>" in templated
    with pytest.raises(ChatTemplateLeakError, match=r"<\|im_start\|>.*prompt #1"):
        assert_plain_prompts([formats.prompt("ok"), templated], qwen_style_tokenizer)
    # our own prompts pass the same check
    assert_plain_prompts([formats.prompt("Name a fruit.")], qwen_style_tokenizer)


def test_check_finds_special_tokens_by_id_and_template_markers(gemma_style_tokenizer, qwen_style_tokenizer):
    gemma = ChatTokenCheck(gemma_style_tokenizer)
    assert any("<start_of_turn>" in f for f in gemma.find("<start_of_turn>user\nhi"))
    assert any("<bos>" in f for f in gemma.find("text <bos> more"))
    assert gemma.find(formats.prompt("plain")) == []
    qwen = ChatTokenCheck(qwen_style_tokenizer)
    assert "<|im_end|>" in qwen.markers  # read from the tokenizer's own chat template


def test_backend_refuses_a_templated_prompt(tiny_backend):
    with pytest.raises(ChatTemplateLeakError):
        tiny_backend.generate(["<start_of_turn>user\nhi<end_of_turn>\n"], Sampling(max_new_tokens=2), seed=0)
    with pytest.raises(ChatTemplateLeakError):
        tiny_backend.continuation_logprobs(["<start_of_turn>user"], [["A"]])
