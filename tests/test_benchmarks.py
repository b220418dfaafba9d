"""The arithmetic of benchmarks/limits.py: a compute-bound rate is the FLOPs per token at the measured rates."""

import json
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import limits  # noqa: E402


def test_limits_count_every_matmul_of_the_model(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    config = json.loads((tiny_model_dir / "config.json").read_text())
    shapes = limits.linear_shapes(config)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert limits.flops_per_token(shapes) == 2 * linear  # every Linear, the (tied) LM head included


def test_limit_at_one_rate_is_rate_over_flops_and_scales_with_passes_and_the_head_share():
    config = {
        "hidden_size": 640,
        "intermediate_size": 2048,
        "num_hidden_layers": 18,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "vocab_size": 262144,
    }
    shapes = limits.linear_shapes(config)
    rates = dict.fromkeys(shapes, 50e9)
    flops = limits.flops_per_token(shapes)
    assert limits.limit_per_token(shapes, rates) == pytest.approx(50e9 / flops)
    assert limits.limit_per_token(shapes, rates, passes=3) == pytest.approx(50e9 / flops / 3)
    head = 2 * 640 * 262144
    assert limits.limit_per_token(shapes, rates, lm_head_share=0) == pytest.approx(50e9 / (flops - head))
    assert head / flops == pytest.approx(0.62, abs=0.01)  # the 262k-vocabulary head is most of a token's FLOPs
