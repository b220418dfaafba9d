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

from maximalcai import tiny
from maximalcai.tiny import build_tiny_model

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _thread_environment():
    """run_job sets torch's thread count in the environment (maximalcai.job.set_threads), which the workflows
    that later tests start would inherit: each test leaves it as it found it."""
    from maximalcai.job import THREAD_VARIABLES

    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def gemma_style_tokenizer():
    return tiny.gemma_style_tokenizer()


@pytest.fixture(scope="session")
def qwen_style_tokenizer():
    return tiny.qwen_style_tokenizer()


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
