"""Generation and scoring with transformers on CPU or GPU: left-padded batches, stop strings, seeded sampling.

Batches are formed from prompts sorted by length (less padding), and each batch draws from its own seed,
so a result depends only on (prompts, seed, batch size), not on what ran before in the process.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path

from maximalcai import formats
from maximalcai.backends.base import Backend, Completion, Prompt, Sampling
from maximalcai.backends.sampling import sample
from maximalcai.reproducibility import derive_seed


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(
        self,
        model_dir: str | Path,
        adapter_dir: str | Path | None = None,
        device: str = "cpu",
        dtype=None,
        batch_size: int = 16,
        scoring_batch_size: int = 8,
        plain_prompts: bool = True,
        model_name: str | None = None,
        tokenizer=None,
        model=None,
    ) -> None:
        import torch

        from maximalcai import models

        tokenizer = tokenizer or models.load_tokenizer(model_dir, padding_side="left")
        tokenizer.padding_side = "left"
        super().__init__(tokenizer, model_name or Path(model_dir).name, plain_prompts)
        self.device = device
        self.dtype = dtype or torch.float32
        self.model = model if model is not None else models.load_model(model_dir, self.dtype, device, adapter_dir)
        self.batch_size = batch_size
        self.scoring_batch_size = scoring_batch_size
        # transformers renamed past_key_values to cache (5.2x); the GPU stack pins an older release.
        forward = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in forward else "past_key_values"

    # ------------------------------------------------------------------------------------------ generate
    def _generate(self, prompts: list[Prompt], sampling: Sampling, seed: int, stop: tuple[str, ...]) -> list[Completion]:
        # Rows that share a prefix stay together (groups in first-appearance order, longest suffix first),
        # so a batch holds few distinct prefixes.
        prefixes = ["" if isinstance(p, str) else p[0] for p in prompts]
        suffixes = [p if isinstance(p, str) else p[1] for p in prompts]
        first_seen = {prefix: i for i, prefix in reversed(list(enumerate(prefixes)))}
        order = sorted(range(len(prompts)), key=lambda i: (first_seen[prefixes[i]], -len(suffixes[i]), i))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        results: list[Completion | None] = [None] * len(prompts)
        for number, batch in enumerate(batches):
            start = time.perf_counter()
            completions = self.decode(
                [prefixes[i] for i in batch], [suffixes[i] for i in batch], sampling,
                derive_seed(seed, "batch", number), stop,
            )
            for index, completion in zip(batch, completions):
                results[index] = completion
            tokens = sum(c.num_tokens for c in completions)
            self.meter.record(tokens, time.perf_counter() - start, len(batch), f"batch {number + 1}/{len(batches)}")
        return [r for r in results if r is not None]

    def _left_padded(self, sequences: list[list[int]]):
        import torch

        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, tokens in enumerate(sequences):
            if tokens:
                ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
                mask[row, width - len(tokens) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def decode(
        self, prefixes: list[str], suffixes: list[str], sampling: Sampling, seed: int, stop: tuple[str, ...]
    ) -> list[Completion]:
        """Decode one batch with a KV cache, dropping rows as they finish.

        Each distinct prefix is run through the model once (all of them in one left-padded pass) and its
        cache rows are copied to the rows that use it; then the suffixes, left-padded after their prefix,
        are prefilled together and decoding starts. Finished rows leave the batch, whereas
        ``model.generate`` keeps computing them until the longest row ends. Sampling draws from the same
        distribution as transformers' warpers (backends/sampling.py); greedy decoding matches
        ``model.generate`` token for token (tests/test_backends.py).
        """
        import torch
        from transformers import DynamicCache

        device = self.device
        bos = [self.tokenizer.bos_token_id] if self._adds_bos() else []
        distinct = list(dict.fromkeys(prefixes))
        group = torch.tensor([distinct.index(p) for p in prefixes], device=device)
        prefix_ids = [bos + self.tokenizer(p, add_special_tokens=False)["input_ids"] if p else [] for p in distinct]
        suffix_ids = [
            (bos if not prefix else []) + self.tokenizer(s, add_special_tokens=False)["input_ids"]
            for prefix, s in zip(prefixes, suffixes)
        ]
        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():
            width = max(len(p) for p in prefix_ids)
            if width:
                shared, shared_mask = self._left_padded(prefix_ids)
                self.model(
                    input_ids=shared, attention_mask=shared_mask,
                    position_ids=(shared_mask.cumsum(-1) - 1).clamp(min=0), **{self._cache_kw: cache},
                    use_cache=True, logits_to_keep=1, cache_position=torch.arange(width, device=device),
                )
                cache.batch_select_indices(group)  # one cache row per prompt (repeats allowed)
                history, prefix_mask = shared[group], shared_mask[group]
            else:
                history = prefix_mask = torch.zeros((len(suffixes), 0), dtype=torch.long, device=device)
            ids, suffix_mask = self._left_padded(suffix_ids)
            mask = torch.cat([prefix_mask, suffix_mask], dim=1)
            positions = prefix_mask.sum(-1, keepdim=True) + (suffix_mask.cumsum(-1) - 1).clamp(min=0)
            out = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, **{self._cache_kw: cache}, use_cache=True,
                logits_to_keep=1, cache_position=torch.arange(width, width + ids.shape[1], device=device),
            )
            history = torch.cat([history, ids], dim=1)
            return self._decode_loop(out, cache, mask, positions, history, width + ids.shape[1], sampling, seed, stop)

    def _decode_loop(self, out, cache, mask, positions, history, length, sampling, seed, stop) -> list[Completion]:
        import torch

        device = self.device
        penalty = self._repetition_penalty(sampling)
        generator = torch.Generator(device=device).manual_seed(seed)
        eos = self.tokenizer.eos_token_id
        count = mask.shape[0]
        active = list(range(count))  # batch row -> output index
        generated: list[list[int]] = [[] for _ in range(count)]
        reasons: list[str | None] = [None] * count
        for step in range(sampling.max_new_tokens):
            scores = out.logits[:, -1, :].float()
            if penalty is not None:
                scores = penalty(history, scores)
            if sampling.greedy:
                chosen = scores.argmax(-1)
            else:
                chosen = sample(scores, sampling.temperature, sampling.top_k, sampling.top_p, generator)
            keep = []
            for row, (index, token) in enumerate(zip(active, chosen.tolist())):
                generated[index].append(token)
                if token == eos:
                    reasons[index] = "eos"
                elif stop and any(s in self.tokenizer.decode(generated[index][-16:]) for s in stop):
                    reasons[index] = "stop"
                elif len(generated[index]) >= sampling.max_new_tokens:
                    reasons[index] = "length"
                else:
                    keep.append(row)
            if not keep:
                break
            if len(keep) < len(active):
                rows = torch.tensor(keep, device=device)
                cache.batch_select_indices(rows)
                mask, history, positions, chosen = mask[rows], history[rows], positions[rows], chosen[rows]
                active = [active[r] for r in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            history = torch.cat([history, chosen[:, None]], dim=1)
            positions = positions[:, -1:] + 1
            out = self.model(
                input_ids=chosen[:, None], attention_mask=mask, position_ids=positions, **{self._cache_kw: cache},
                use_cache=True, cache_position=torch.tensor([length + step], device=device),
            )
        return [self._completion(tokens, reason, stop) for tokens, reason in zip(generated, reasons)]

    @staticmethod
    def _repetition_penalty(sampling: Sampling):
        if sampling.repetition_penalty == 1.0:
            return None
        from transformers import RepetitionPenaltyLogitsProcessor

        return RepetitionPenaltyLogitsProcessor(sampling.repetition_penalty)

    def _completion(self, tokens: list[int], reason: str | None, stop: tuple[str, ...]) -> Completion:
        raw = self.tokenizer.decode(tokens, skip_special_tokens=True)
        text, hit_stop = formats.cut_at_stop(raw, stop)
        if hit_stop:
            reason = "stop"
        return Completion(text=text, finish_reason=reason or "length", num_tokens=len(tokens))

    # ------------------------------------------------------------------------------------------- scoring
    def _continuation_logprobs(self, prompts: list[str], options: list[list[str]]) -> list[list[float]]:
        """Left-padded forward passes with explicit positions; only the last few positions' logits are kept."""
        import torch

        bos = [self.tokenizer.bos_token_id] if self._adds_bos() else []
        rows: list[tuple[int, int, list[int], int]] = []  # (prompt index, option index, ids, option length)
        for p, (prompt, opts) in enumerate(zip(prompts, options)):
            prompt_ids = bos + self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            for o, option in enumerate(opts):
                option_ids = self.tokenizer(option, add_special_tokens=False)["input_ids"]
                if not option_ids:
                    raise ValueError(f"option {option!r} tokenizes to nothing")
                rows.append((p, o, prompt_ids + option_ids, len(option_ids)))
        scores = [[0.0] * len(opts) for opts in options]
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(rows), self.scoring_batch_size):
            chunk = rows[start : start + self.scoring_batch_size]
            width = max(len(r[2]) for r in chunk)
            keep = max(r[3] for r in chunk) + 1
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, (_, _, ids, _) in enumerate(chunk):
                input_ids[i, width - len(ids) :] = torch.tensor(ids)
                mask[i, width - len(ids) :] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = self.model(
                    input_ids=input_ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    position_ids=positions.to(self.device),
                    logits_to_keep=keep,
                ).logits.float()
            logprobs = torch.log_softmax(logits, dim=-1)  # [batch, keep, vocab]; position j predicts token j+1
            for i, (p, o, ids, n) in enumerate(chunk):
                targets = torch.tensor(ids[-n:], device=logprobs.device)
                predicted = logprobs[i, keep - 1 - n : keep - 1]  # the n positions before each option token
                scores[p][o] = float(predicted.gather(-1, targets[:, None]).sum())
        return scores

    def _adds_bos(self) -> bool:
        bos = self.tokenizer.bos_token_id
        return bos is not None and self.tokenizer("x")["input_ids"][:1] == [bos]

    def close(self) -> None:
        self.model = None

