"""Generation and scoring with transformers on CPU or GPU: shared-prefix prefill, a KV-cached decoding loop
with continuous batching (finished rows leave, waiting prompts take their places), stop strings, seeded
sampling, and option log-probabilities.

Prompts that share a prefix (the few-shot examples) are grouped so each prefill computes that prefix once.
Each ``generate`` call draws from its own seeded generator and schedules its prompts in a fixed order, so a
result depends only on (prompts, seed, batch size), not on what ran before in the process. See
benchmarks/README.md for what each part buys on a CPU.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path

from maximalcai import formats
from maximalcai.backends.base import Backend, Completion, Prompt, Sampling
from maximalcai.backends.sampling import sample
from maximalcai.patches import kv_cache
from maximalcai.progress import Progress
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
        refill: bool = True,
        prefill_cells: int | None = None,
        cache_slots: int | None = None,
    ) -> None:
        """``refill``: continuous batching (the default); False decodes fixed batches until their last row
        ends, as before 2026-11-27 (benchmarks/generation.py measures both). ``prefill_cells``: the most
        attention scores one prefill pass may compute (rows x new tokens x cache slots); rows beyond it are
        prefilled in further passes, so memory is bounded by this setting, not by the prompts' lengths
        (benchmarks/memory.py). None: no bound. ``cache_slots``: the most KV-cache slots (rows x the widest
        row's prompt and answer) the decoding batch may hold; fewer rows join while prompts are long. None: no
        bound (``batch_size`` rows whatever their length)."""
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
        self.prefill_cells = prefill_cells
        self.cache_slots = cache_slots
        self.prefills = 0  # prefill passes made by generate (batches, plus refills)
        # transformers renamed past_key_values to cache (5.2x); the GPU stack pins an older release.
        forward = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in forward else "past_key_values"
        # Sliding-window layers (Gemma 3) count their window in cache slots; rows padded in the middle (a
        # shared prefix, then padding, then the row's own text) would see fewer real tokens. For such models
        # the cache keeps every slot and the masks below count the window in real token positions.
        text = self.model.config.get_text_config()
        self.context_length = getattr(text, "max_position_embeddings", None)
        types, window = getattr(text, "layer_types", None), getattr(text, "sliding_window", None)
        self._windows = (
            {t: (window if t == "sliding_attention" else None) for t in dict.fromkeys(types)}
            if types and window and "sliding_attention" in types
            else None
        )
        self.refill = refill and kv_cache.can_join(self.model.config, own_masks=self._windows is not None)

    # ------------------------------------------------------------------------------------------- helpers
    def _tokens(self, text: str, first: bool) -> list[int]:
        """Token ids of ``text``; ``first`` adds the tokenizer's BOS unless the text already starts with it
        (chat-templated prompts such as Llama Guard's carry their own)."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        if first and bos is not None and self._adds_bos and ids[:1] != [bos]:
            ids = [bos] + ids
        return ids

    @property
    def _adds_bos(self) -> bool:
        if not hasattr(self, "_adds_bos_cached"):
            bos = self.tokenizer.bos_token_id
            self._adds_bos_cached = bos is not None and self.tokenizer("x")["input_ids"][:1] == [bos]
        return self._adds_bos_cached

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

    def _attention_mask(self, valid, positions, queries: int):
        """The attention mask for a forward pass over the last ``queries`` slots of the cache.

        Full-attention models get the 2D padding mask. Sliding-window models get one additive 4D mask per
        layer type: causal over valid slots, with the sliding window measured in real positions.
        """
        import torch

        if self._windows is None:
            return valid
        slots = valid.shape[1]
        key_slots = torch.arange(slots, device=valid.device)
        query_slots = key_slots[slots - queries :]
        causal = key_slots[None, :] <= query_slots[:, None]  # [queries, slots]
        itself = (key_slots[None, :] == query_slots[:, None])[None]  # padding queries attend to themselves
        allowed = valid.bool()[:, None, :] & causal[None]  # [rows, queries, slots]
        distance = positions[:, slots - queries :, None] - positions[:, None, :]
        lowest = torch.finfo(self.model.dtype).min
        masks = {}
        for layer_type, window in self._windows.items():
            ok = (allowed if window is None else allowed & (distance < window)) | itself
            masks[layer_type] = torch.zeros(ok.shape, dtype=self.model.dtype, device=valid.device).masked_fill(
                ~ok, lowest
            )[:, None]
        return masks

    @staticmethod
    def _split(prompts: list[Prompt]) -> tuple[list[str], list[str]]:
        return (
            ["" if isinstance(p, str) else p[0] for p in prompts],
            [p if isinstance(p, str) else p[1] for p in prompts],
        )

    @staticmethod
    def _batches(prefixes: list, sizes: list[int], batch_size: int) -> list[list[int]]:
        """Row indices grouped by shared prefix (first-appearance order, longest suffix first), then
        chunked, so each batch holds few distinct prefixes."""
        first_seen = {prefix: i for i, prefix in reversed(list(enumerate(prefixes)))}
        order = sorted(range(len(prefixes)), key=lambda i: (first_seen[prefixes[i]], -sizes[i], i))
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def _encode(self, prefixes: list[str], suffixes: list[str]) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids split into (shared prefix, per-row rest), exactly as the joined text tokenizes.

        Tokenizers may merge across the prefix/suffix boundary, so each row is tokenized whole and a group
        shares only the longest token prefix common to its prefix text and all of its rows.
        """
        full = [self._tokens(p + s, first=True) for p, s in zip(prefixes, suffixes)]
        shared: dict[str, list[int]] = {}
        for prefix, ids in zip(prefixes, full):
            if not prefix:
                continue
            common = shared.get(prefix)
            if common is None:
                common = self._tokens(prefix, first=True)
            n = 0
            while n < min(len(common), len(ids)) and common[n] == ids[n]:
                n += 1
            shared[prefix] = common[:n]
        prefix_ids = [shared.get(p, []) for p in prefixes]
        return prefix_ids, [ids[len(pre) :] for pre, ids in zip(prefix_ids, full)]

    @staticmethod
    def _whole_groups(keys: list, order: list[list[int]], batch_size: int) -> list[list[int]]:
        """Batches of at most ``batch_size`` rows that never split the rows of one prompt's options, so each
        prompt (their shared prefix) is computed once; a larger group is a batch of its own."""
        groups: list[list[int]] = []
        for index in (i for batch in order for i in batch):
            if groups and keys[groups[-1][-1]] == keys[index] and keys[index][0] == "prompt":
                groups[-1].append(index)
            else:
                groups.append([index])
        batches: list[list[int]] = []
        for group in groups:
            if batches and len(batches[-1]) + len(group) <= batch_size:
                batches[-1] += group
            else:
                batches.append(list(group))
        return batches

    def _parts(self, rows: list[int], prefix_ids: list[list[int]], suffix_ids: list[list[int]]) -> list[list[int]]:
        """``rows`` (in order) cut into consecutive parts whose prefill stays within ``prefill_cells``: a part's
        cost is its rows x its longest own text x (its longest shared prefix + that text). A row over the
        bound alone is a part of its own."""
        if self.prefill_cells is None:
            return [rows]
        parts: list[list[int]] = [[]]
        prefix = own = 0
        for row in rows:
            wider = (max(prefix, len(prefix_ids[row])), max(own, len(suffix_ids[row])))
            if parts[-1] and (len(parts[-1]) + 1) * wider[1] * sum(wider) > self.prefill_cells:
                parts.append([])
                wider = (len(prefix_ids[row]), len(suffix_ids[row]))
            parts[-1].append(row)
            prefix, own = wider
        return parts

    def _admissible(self, candidates, active: int, width: int, prefix_ids, suffix_ids, sampling: Sampling) -> int:
        """How many of ``candidates`` (in order) may join ``active`` rows whose cache is ``width`` slots wide
        without the cache passing ``cache_slots`` (rows x (widest prompt + max_new_tokens)); at least one row
        when none is active. All of them without a bound."""
        if self.cache_slots is None:
            return len(candidates)
        widest = width + sampling.max_new_tokens if active else 0
        for count, index in enumerate(candidates):
            widest = max(widest, len(prefix_ids[index]) + len(suffix_ids[index]) + sampling.max_new_tokens)
            if (active + count + 1) * widest > self.cache_slots:
                return max(count, 0 if active else 1)
        return len(candidates)

    def _prefill(self, prefix_ids: list[list[int]], suffix_ids: list[list[int]], keep: int):
        """Run a batch's prompts through the model with a fresh KV cache.

        Each distinct prefix is computed once (all of them in one left-padded pass) and its cache rows are
        copied to the rows that use it; then the rest of each row, left-padded after its prefix, is run in
        one pass. Returns (output with the last ``keep`` positions' logits, cache, valid-slot mask, slot
        positions, token history).
        """
        import torch

        device = self.device
        distinct = list(dict.fromkeys(tuple(p) for p in prefix_ids))
        group = torch.tensor([distinct.index(tuple(p)) for p in prefix_ids], device=device)
        cache = kv_cache.growing_cache(self.model.config, own_masks=self._windows is not None)
        width = max(len(p) for p in distinct)
        if width:
            shared, shared_valid = self._left_padded([list(p) for p in distinct])
            shared_positions = (shared_valid.cumsum(-1) - 1).clamp(min=0)
            self.model(
                input_ids=shared,
                attention_mask=self._attention_mask(shared_valid, shared_positions, width),
                position_ids=shared_positions,
                **{self._cache_kw: cache},
                use_cache=True,
                logits_to_keep=1,
                cache_position=torch.arange(width, device=device),
            )
            cache.batch_select_indices(group)  # one cache row per prompt (repeats allowed)
            history, prefix_valid, prefix_positions = shared[group], shared_valid[group], shared_positions[group]
        else:
            history = prefix_valid = prefix_positions = torch.zeros(
                (len(prefix_ids), 0), dtype=torch.long, device=device
            )
        ids, suffix_valid = self._left_padded(suffix_ids)
        valid = torch.cat([prefix_valid, suffix_valid], dim=1)
        suffix_positions = prefix_valid.sum(-1, keepdim=True) + (suffix_valid.cumsum(-1) - 1).clamp(min=0)
        positions = torch.cat([prefix_positions, suffix_positions], dim=1)
        out = self.model(
            input_ids=ids,
            attention_mask=self._attention_mask(valid, positions, ids.shape[1]),
            position_ids=suffix_positions,
            **{self._cache_kw: cache},
            use_cache=True,
            logits_to_keep=keep,
            cache_position=torch.arange(width, width + ids.shape[1], device=device),
        )
        return out, cache, valid, positions, torch.cat([history, ids], dim=1)

    # ------------------------------------------------------------------------------------------ generate
    def _generate(
        self, prompts: list[Prompt], sampling: Sampling, seed: int, stop: tuple[str, ...]
    ) -> list[Completion]:
        """Continuous batching: up to ``batch_size`` rows decode together; when a quarter of the places are
        free, the next prompts in line are prefilled and join the batch. Prompts are lined up by shared prefix
        (longest first), so a refill's rows usually share one. Without ``refill``, each batch of that line
        decodes until its last row ends (the tail of a batch then runs at a few rows)."""
        import torch

        prefixes, suffixes = self._split(prompts)
        line = [i for batch in self._batches(prefixes, [len(s) for s in suffixes], self.batch_size) for i in batch]
        prefix_ids, suffix_ids = self._encode(prefixes, suffixes)
        generator = torch.Generator(device=self.device).manual_seed(derive_seed(seed, "generate"))
        progress = Progress(f"generate ({self.model_name})", len(prompts))
        results: list[Completion | None] = [None] * len(prompts)
        start, tokens, done = time.perf_counter(), 0, 0

        def finished(index: int, completion: Completion) -> None:
            nonlocal tokens, done
            results[index] = completion
            tokens, done = tokens + completion.num_tokens, done + 1
            progress.update(1, completion.num_tokens)

        if self.refill:
            self._decode(line, prefix_ids, suffix_ids, sampling, generator, stop, finished)
        else:
            for first in range(0, len(line), self.batch_size):
                self._decode(
                    line[first : first + self.batch_size], prefix_ids, suffix_ids, sampling, generator, stop, finished
                )
        self.meter.record(tokens, time.perf_counter() - start, done, f"{done} prompts")
        return [r for r in results if r is not None]

    def _decode(self, line, prefix_ids, suffix_ids, sampling: Sampling, generator, stop: tuple[str, ...], finished):
        """Decode the prompts of ``line`` (indices into the id lists) with one KV cache, at most ``batch_size``
        rows at a time, calling ``finished(index, completion)`` as each row ends.

        ``model.generate`` keeps computing finished rows until the longest one ends; here they leave the batch
        at once. Sampling draws from the same distribution as transformers' warpers (backends/sampling.py);
        greedy decoding matches ``model.generate`` token for token (tests/test_backends.py).
        """
        import torch

        device = self.device
        penalty = self._repetition_penalty(sampling)
        eos = self.tokenizer.eos_token_id
        waiting = list(line)
        active: list[int] = []  # batch row -> prompt index
        generated: dict[int, list[int]] = {}
        state = logits = None  # (cache, valid, positions, history) of the active rows; their next-token logits
        with torch.inference_mode():
            while waiting or active:
                least = max(1, self.batch_size // 4) if active else 1  # refill once a quarter of places is free
                free = self.batch_size - len(active)
                if waiting and free >= least:
                    width = state[1].shape[1] if active else 0
                    free = self._admissible(waiting[:free], len(active), width, prefix_ids, suffix_ids, sampling)
                if waiting and free >= least:
                    joining, waiting = waiting[:free], waiting[free:]
                    # Parts join one cache, so only a cache that takes rows (refill) can be prefilled in parts.
                    for part in self._parts(joining, prefix_ids, suffix_ids) if self.refill else [joining]:
                        out, *new = self._prefill([prefix_ids[i] for i in part], [suffix_ids[i] for i in part], 1)
                        self.prefills += 1
                        new_logits = out.logits[:, -1, :]
                        state = new if state is None else merge_rows(state, new, self.tokenizer.pad_token_id)
                        logits = new_logits if logits is None else torch.cat([logits, new_logits])
                        del out
                    active += joining
                    generated.update((i, []) for i in joining)
                scores = logits.float()
                if penalty is not None:
                    scores = penalty(state[3], scores)
                if sampling.greedy:
                    chosen = scores.argmax(-1)
                else:
                    chosen = sample(scores, sampling.temperature, sampling.top_k, sampling.top_p, generator)
                keep = []
                for row, (index, token) in enumerate(zip(active, chosen.tolist())):
                    tokens = generated[index]
                    tokens.append(token)
                    reason = self._end_reason(tokens, eos, stop, sampling.max_new_tokens)
                    if reason is None:
                        keep.append(row)
                    else:
                        finished(index, self._completion(generated.pop(index), reason, stop))
                if not keep:
                    active, state, logits = [], None, None
                    continue
                cache, valid, positions, history = state
                if len(keep) < len(active):
                    rows = torch.tensor(keep, device=device)
                    cache.batch_select_indices(rows)
                    valid, history, positions, chosen = valid[rows], history[rows], positions[rows], chosen[rows]
                    active = [active[r] for r in keep]
                    # Slots that were padding for every row left (a long prompt's width) are dropped: the cache
                    # holds the longest active row, not the longest row the batch ever had.
                    unused = int(valid.any(0).int().argmax())
                    if unused >= TRIM_SLOTS and self.refill:
                        cache.drop_leading(unused)
                        valid, positions = valid[:, unused:], positions[:, unused:]
                valid = torch.cat([valid, valid.new_ones((len(active), 1))], dim=1)
                history = torch.cat([history, chosen[:, None]], dim=1)
                positions = torch.cat([positions, positions[:, -1:] + 1], dim=1)
                out = self.model(
                    input_ids=chosen[:, None],
                    attention_mask=self._attention_mask(valid, positions, 1),
                    position_ids=positions[:, -1:],
                    **{self._cache_kw: cache},
                    use_cache=True,
                    cache_position=torch.tensor([valid.shape[1] - 1], device=device),
                )
                state, logits = (cache, valid, positions, history), out.logits[:, -1, :]

    def _end_reason(self, tokens: list[int], eos: int, stop: tuple[str, ...], max_new_tokens: int) -> str | None:
        """Why a row ends with its newest token: ``eos``, a ``stop`` string in its last 16 tokens, or the
        ``length`` cap; None while it goes on."""
        if tokens[-1] == eos:
            return "eos"
        if stop and any(s in self.tokenizer.decode(tokens[-16:]) for s in stop):
            return "stop"
        return "length" if len(tokens) >= max_new_tokens else None

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
    def _continuation_logprobs(self, prompts: list[Prompt], options: list[list[str]]) -> list[list[float]]:
        """Summed log-probability of each option after its prompt.

        When every option of a prompt is a single token, one pass over the prompt scores them all from its
        last position, and prompts sharing a prefix (the demonstrations) share its computation. Otherwise
        the whole prompt becomes the shared prefix of its option rows, so it is computed once and each
        option costs only its own tokens.
        """
        import torch

        prefixes, suffixes = self._split(prompts)
        option_ids = [[self.tokenizer(o, add_special_tokens=False)["input_ids"] for o in opts] for opts in options]
        for opts, ids in zip(options, option_ids):
            for option, tokens in zip(opts, ids):
                if not tokens:
                    raise ValueError(f"option {option!r} tokenizes to nothing")
        prefix_ids, rest_ids = self._encode(prefixes, suffixes)
        # rows: (prompt index, option index or None for "all single-token options", shared ids, own ids, option length)
        rows: list[tuple[int, int | None, list[int], list[int], int]] = []
        for p, (shared, rest) in enumerate(zip(prefix_ids, rest_ids)):
            if all(len(ids) == 1 for ids in option_ids[p]):
                rows.append((p, None, shared, rest, 0))
            else:
                whole = (
                    shared + rest
                )  # the last prompt token stays in the row: its logits score the option's first token
                rows += [(p, o, whole[:-1], whole[-1:] + ids, len(ids)) for o, ids in enumerate(option_ids[p])]
        scores = [[0.0] * len(opts) for opts in options]
        keys = [("prompt", r[0]) if r[1] is not None else ("prefix", prefixes[r[0]]) for r in rows]
        progress = Progress(f"score ({self.model_name})", len(rows), "option rows")
        for batch in self._whole_groups(
            keys, self._batches(keys, [len(r[3]) for r in rows], len(rows)), self.scoring_batch_size
        ):
            chunk = [rows[i] for i in batch]
            keep = max(r[4] for r in chunk) + 1
            shared, own = [r[2] for r in chunk], [r[3] for r in chunk]
            with torch.inference_mode():
                logits = torch.cat(
                    [
                        self._prefill([shared[i] for i in part], [own[i] for i in part], keep=keep)[0].logits
                        for part in self._parts(list(range(len(chunk))), shared, own)
                    ]
                )
            logprobs = torch.log_softmax(logits.float(), dim=-1)  # [rows, keep, vocab]; position j predicts j+1
            for i, (p, o, _, own, n) in enumerate(chunk):
                if o is None:
                    last = logprobs[i, -1]
                    scores[p] = [float(last[t[0]]) for t in option_ids[p]]
                else:
                    targets = torch.tensor(own[-n:], device=logprobs.device)
                    predicted = logprobs[i, keep - 1 - n : keep - 1]  # the n positions before each option token
                    scores[p][o] = float(predicted.gather(-1, targets[:, None]).sum())
            progress.update(len(chunk))
        return scores

    def close(self) -> None:
        self.model = None


TRIM_SLOTS = 32  # drop leading all-padding slots once there are at least this many


def merge_rows(state, joining, pad_id: int):
    """The decoding state (cache, valid-slot mask, slot positions, token history) of the rows decoding now and
    of rows just prefilled, as one batch: the shorter side is padded on the left with empty, masked slots."""
    import torch

    (cache, valid, positions, history), (new_cache, new_valid, new_positions, new_history) = state, joining
    width = max(valid.shape[1], new_valid.shape[1])

    def left(tensor, fill, wide=width):
        pad = wide - tensor.shape[1]
        return tensor if pad == 0 else torch.nn.functional.pad(tensor, (pad, 0), value=fill)

    cache.append_rows(new_cache, width)
    # the token history keeps its leading padding when the cache drops it, so it has a width of its own
    tokens = max(history.shape[1], new_history.shape[1])
    return (
        cache,
        torch.cat([left(valid, 0), left(new_valid, 0)]),
        torch.cat([left(positions, 0), left(new_positions, 0)]),
        torch.cat([left(history, pad_id, tokens), left(new_history, pad_id, tokens)]),
    )
