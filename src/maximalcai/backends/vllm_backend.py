"""Generation and scoring with vLLM on a GPU, LoRA adapters attached per request.

Imported only when ``generation.backend`` resolves to ``vllm`` (CUDA present, the gpu extra installed).
One engine per base model and process is shared by every backend opened on it; the base model and each
stage's adapter are just different ``LoRARequest``s on that engine (a single GPU cannot hold one engine
per model). Prompts are tokenized here, exactly as the transformers backend does, and passed as token
ids: vLLM would otherwise add a second BOS to chat-templated prompts such as Llama Guard's.
Automatic prefix caching does what the shared-prefix prefill does on the CPU.

Not exercised in CI (no GPU); the pure helpers below are unit-tested with vLLM-shaped objects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from maximalcai import formats
from maximalcai.backends.base import Backend, Completion, Prompt, Sampling, prompt_text
from maximalcai.errors import HardwareError
from maximalcai.progress import LogLines
from maximalcai.reproducibility import derive_seed

logger = logging.getLogger(__name__)


def log_progress(*args, **kwargs):
    """vLLM's progress bar (its ``use_tqdm`` takes a tqdm factory), drawn as plain lines in the rule's log."""
    from tqdm import tqdm

    return tqdm(*args, **{**kwargs, "file": LogLines(), "dynamic_ncols": False, "ncols": 100})


_ENGINES: dict[tuple, Any] = {}
_LORA_IDS: dict[str, int] = {}


def completion_from_output(output: Any, stop: Sequence[str]) -> Completion:
    """A vLLM ``CompletionOutput`` -> Completion (finish reason normalised to stop / eos / length)."""
    if output.finish_reason == "length":
        reason = "length"
    elif isinstance(output.stop_reason, str):
        reason = "stop"
    else:  # None or a token id: the end-of-sequence token
        reason = "eos"
    text, hit = formats.cut_at_stop(output.text, tuple(stop))
    return Completion(text=text, finish_reason="stop" if hit else reason, num_tokens=len(output.token_ids))


def option_logprob(prompt_logprobs: Sequence[dict | None], token_ids: Sequence[int], option_length: int) -> float:
    """Sum of the log-probabilities vLLM reports for the last ``option_length`` prompt tokens."""
    total = 0.0
    for position in range(len(token_ids) - option_length, len(token_ids)):
        entry = prompt_logprobs[position][token_ids[position]]
        total += entry.logprob if hasattr(entry, "logprob") else float(entry)
    return total


class VLLMBackend(Backend):
    name = "vllm"

    def __init__(
        self,
        model_dir: str | Path,
        adapter_dir: str | Path | None = None,
        dtype=None,
        plain_prompts: bool = True,
        model_name: str | None = None,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int = 4096,
        tensor_parallel_size: int = 1,
        enforce_eager: bool = False,
        max_lora_rank: int = 64,
    ) -> None:
        try:
            from vllm import LLM
            from vllm.lora.request import LoRARequest
        except ImportError as exc:  # pragma: no cover - depends on the gpu extra
            raise HardwareError(
                "generation.backend resolved to vllm but vllm is not importable; install the GPU extra "
                "(pip install -e '.[gpu]' -c constraints/gpu.txt) or set generation.backend: transformers"
            ) from exc
        from maximalcai.models import load_tokenizer

        super().__init__(load_tokenizer(model_dir), model_name or Path(model_dir).name, plain_prompts)
        key = (str(model_dir), str(dtype), max_model_len, tensor_parallel_size)
        if key not in _ENGINES:
            logger.info("starting a vLLM engine for %s", model_dir)
            _ENGINES[key] = LLM(
                model=str(model_dir),
                tokenizer=str(model_dir),
                dtype=str(dtype).removeprefix("torch.") if dtype else "auto",
                seed=0,
                enable_lora=True,
                max_loras=2,
                max_lora_rank=max_lora_rank,
                gpu_memory_utilization=gpu_memory_utilization,
                max_model_len=max_model_len,
                tensor_parallel_size=tensor_parallel_size,
                enforce_eager=enforce_eager,
                enable_prefix_caching=True,
            )
        self.llm = _ENGINES[key]
        self.context_length = max_model_len
        self.lora = None
        if adapter_dir is not None:
            lora_id = _LORA_IDS.setdefault(str(adapter_dir), len(_LORA_IDS) + 1)
            self.lora = LoRARequest(Path(adapter_dir).parent.name, lora_id, str(adapter_dir))

    def _tokens(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        adds_bos = bos is not None and self.tokenizer("x")["input_ids"][:1] == [bos]
        return [bos] + ids if adds_bos and ids[:1] != [bos] else ids

    def _generate(
        self, prompts: list[Prompt], sampling: Sampling, seed: int, stop: tuple[str, ...]
    ) -> list[Completion]:
        from vllm import SamplingParams, TokensPrompt

        requests = [TokensPrompt(prompt_token_ids=self._tokens(prompt_text(p))) for p in prompts]
        params = [
            SamplingParams(
                n=1,
                temperature=sampling.temperature,
                top_p=sampling.top_p if not sampling.greedy else 1.0,
                top_k=sampling.top_k or -1,
                max_tokens=sampling.max_new_tokens,
                repetition_penalty=sampling.repetition_penalty,
                stop=list(stop),
                seed=derive_seed(seed, i),
            )
            for i in range(len(prompts))
        ]
        start = time.perf_counter()
        outputs = self.llm.generate(requests, params, lora_request=self.lora, use_tqdm=log_progress)
        completions = [completion_from_output(o.outputs[0], stop) for o in outputs]
        self.meter.record(
            sum(c.num_tokens for c in completions), time.perf_counter() - start, len(completions), "vllm"
        )
        return completions

    def _continuation_logprobs(self, prompts: list[Prompt], options: list[list[str]]) -> list[list[float]]:
        from vllm import SamplingParams, TokensPrompt

        rows: list[tuple[int, int, list[int], int]] = []
        for p, (prompt, opts) in enumerate(zip(prompts, options)):
            base = self._tokens(prompt_text(prompt))
            for o, option in enumerate(opts):
                ids = self.tokenizer(option, add_special_tokens=False)["input_ids"]
                rows.append((p, o, base + ids, len(ids)))
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=r[2]) for r in rows], params, lora_request=self.lora, use_tqdm=log_progress
        )
        scores = [[0.0] * len(opts) for opts in options]
        for (p, o, ids, n), output in zip(rows, outputs):
            scores[p][o] = option_logprob(output.prompt_logprobs, ids, n)
        return scores
