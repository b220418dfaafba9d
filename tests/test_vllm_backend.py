"""The vLLM backend's pure helpers, with vLLM-shaped objects (vLLM itself needs a GPU and is not installed here)."""

from dataclasses import dataclass

import pytest

from maximalcai import formats
from maximalcai.backends.vllm_backend import completion_from_output, option_logprob
from maximalcai.errors import HardwareError
from maximalcai.hardware import resolve_backend_name


@dataclass
class Output:  # the fields of vllm.CompletionOutput that the backend reads
    text: str
    token_ids: list
    finish_reason: str
    stop_reason: object


@dataclass
class Logprob:
    logprob: float


def test_finish_reasons_are_normalised():
    stopped = completion_from_output(Output("Paris. ", [1, 2], "stop", "### Instruction:"), formats.STOP_STRINGS)
    assert (stopped.text, stopped.finish_reason, stopped.num_tokens) == ("Paris.", "stop", 2)
    assert completion_from_output(Output("Done.", [1, 2, 3], "stop", None), ()).finish_reason == "eos"
    assert completion_from_output(Output("Done.", [1], "stop", 106), ()).finish_reason == "eos"
    assert completion_from_output(Output("and so", [1] * 8, "length", None), ()).finish_reason == "length"
    # a header that survives in the text (vLLM stops only on exact stop strings) is still cut
    assert (
        completion_from_output(Output("Yes.\n\n### Response:\nno", [1], "length", None), formats.STOP_STRINGS).text
        == "Yes."
    )


def test_option_logprob_sums_the_option_positions():
    ids = [2, 10, 11, 12, 13]
    prompt_logprobs = [
        None,
        {10: Logprob(-1.0)},
        {11: Logprob(-2.0)},
        {12: Logprob(-0.5), 99: Logprob(-0.1)},
        {13: Logprob(-0.25)},
    ]
    assert option_logprob(prompt_logprobs, ids, 2) == -0.75
    assert option_logprob(prompt_logprobs, ids, 1) == -0.25


def test_vllm_is_refused_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(HardwareError, match="generation.backend is 'vllm'"):
        resolve_backend_name("vllm", "cpu")
    assert resolve_backend_name("auto", "cpu") == "transformers"


def test_gpu_libraries_are_not_imported_on_the_cpu_path():
    import subprocess
    import sys

    code = (
        "import sys, maximalcai.backends, maximalcai.training, maximalcai.training.dpo, "
        "maximalcai.backends.vllm_backend; "
        "print(sorted(m for m in ('vllm', 'unsloth', 'bitsandbytes') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
