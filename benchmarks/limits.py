"""How far from this CPU's limit, and from llama.cpp with batching: generation, scoring and a DPO step.

The limit: torch's matmul FLOP/s on this machine at the model's own shapes (every linear layer of a Gemma 3
270M block and the 262k-vocabulary LM head; 16 rows as in batched decoding, 512 rows as in a prefill), fp32
and bf16. A workload's compute-bound rate is its matmul FLOPs per token, each shape at its measured rate;
attention scores, norms, sampling and Python are left out, so real code can only come in under it.

The peer: llama.cpp on the same GGUF (Q4_K_M) through its C API (llama-cpp-python): 16 sequences with
continuous batching, as ``llama-server -np 16 --cont-batching`` runs them, for generation; its prompt
processing (``llama-bench -p``: logits for each prompt's last token only) for scoring. Same prompts, same
sampling, stop strings and max tokens. Our DPO step runs through benchmarks/dpo.py's child (TRL + PEFT, the
default settings); llama.cpp does not train, so that row has only the limit.

    pip install -e '.[benchmark]'
    python benchmarks/limits.py --threads 1 2 --out benchmarks/results/limits.json
    python benchmarks/limits.py --report benchmarks/results/limits.json      # its table again
    python benchmarks/limits.py --threads 2 --profile benchmarks/results/limits.json   # add where the time goes
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generation import LlamaCppBatched, base_model_dir, cpu_model, prompts  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def linear_shapes(config: dict) -> dict[str, tuple[int, int, int]]:
    """name -> (in features, out features, count per token) of every matmul a token passes through."""
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    q = config["num_attention_heads"] * config["head_dim"]
    kv = config["num_key_value_heads"] * config["head_dim"]
    return {
        "q_proj": (h, q, layers),
        "k_proj/v_proj": (h, kv, 2 * layers),
        "o_proj": (q, h, layers),
        "gate_proj/up_proj": (h, i, 2 * layers),
        "down_proj": (i, h, layers),
        "lm_head": (h, config["vocab_size"], 1),
    }


def matmul_rate(rows: int, k: int, n: int, dtype, seconds: float = 0.6) -> float:
    """FLOP/s of x[rows, k] @ W[n, k]^T (``F.linear``, as the model runs it), best of a few timed loops."""
    import torch

    x = torch.randn(rows, k, dtype=dtype)
    w = torch.randn(n, k, dtype=dtype)
    torch.nn.functional.linear(x, w)  # warm-up
    best = 0.0
    for _ in range(3):
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            torch.nn.functional.linear(x, w)
            calls += 1
        best = max(best, 2 * rows * k * n * calls / (time.perf_counter() - start))
    return best


def limit_per_token(shapes, rates, lm_head_share: float = 1.0, passes: float = 1.0) -> float:
    """Compute-bound tokens/s: the matmul FLOPs of one token, each shape at its measured rate.
    ``lm_head_share``: share of tokens that go through the LM head; ``passes``: forward-equivalent passes."""
    seconds = 0.0
    for name, (k, n, count) in shapes.items():
        share = lm_head_share if name == "lm_head" else 1.0
        seconds += passes * share * count * 2 * k * n / rates[name]
    return 1.0 / seconds


def flops_per_token(shapes) -> float:
    return sum(count * 2 * k * n for k, n, count in shapes.values())


def our_scoring(model_dir, split_prompts, options):
    """Tokens/s of continuation_logprobs: every prompt token prefilled, the LM head on the option tokens."""
    from maximalcai.backends.transformers_backend import TransformersBackend
    from maximalcai.hardware import resolve_dtype

    backend = TransformersBackend(model_dir, dtype=resolve_dtype("auto", "cpu"), batch_size=16)
    backend.continuation_logprobs(split_prompts[:2], [options] * 2)  # warm-up
    start = time.perf_counter()
    backend.continuation_logprobs(split_prompts, [options] * len(split_prompts))
    seconds = time.perf_counter() - start
    tokenizer = backend.tokenizer
    tokens = sum(len(tokenizer(p + s)["input_ids"]) for p, s in split_prompts)
    return tokens, seconds


def our_generation(model_dir, split_prompts, sampling, refill=True):
    from generation import ours

    return ours(model_dir, split_prompts, sampling, batch_size=16, refill=refill)


def generation_profile(model_dir, split_prompts, sampling, shapes, rates) -> list[dict]:
    """Where generation's time goes: forward hooks time each attention block (its projections apart), MLP and
    the LM head, in the prefill and in decoding; the sampler and our masks are timed by wrapping them; the
    rest of the model's forward (embeddings, norms) and of the loop (stop strings, cache bookkeeping, Python)
    is what is left. Each matmul part is set beside its compute-bound time at the measured rates."""
    from collections import defaultdict

    from maximalcai.backends import transformers_backend
    from maximalcai.backends.transformers_backend import TransformersBackend
    from maximalcai.hardware import resolve_dtype

    backend = TransformersBackend(model_dir, dtype=resolve_dtype("auto", "cpu"), batch_size=16)
    backend.generate(split_prompts[:2], sampling, seed=1)  # warm-up
    seconds: dict = defaultdict(float)
    phase, starts = ["decode"], {}

    def timed(module, part):
        def pre(m, args):
            starts[m] = time.perf_counter()

        def post(m, args, out):
            seconds[phase[0], part] += time.perf_counter() - starts[m]

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)

    def wrapped(function, part, switch=None):
        def run(*args, **kwargs):
            before, start = phase[0], time.perf_counter()
            phase[0] = switch or before
            try:
                return function(*args, **kwargs)
            finally:
                seconds[phase[0], part] += time.perf_counter() - start
                phase[0] = before

        return run

    model = backend.model
    timed(model, "model forward")
    for layer in model.model.layers:
        timed(layer.self_attn, "attention")
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            timed(getattr(layer.self_attn, name), "attention projections")
        timed(layer.mlp, "mlp")
    timed(model.lm_head, "lm head")
    backend._prefill = wrapped(backend._prefill, "total", switch="prefill")
    backend._attention_mask = wrapped(backend._attention_mask, "our masks")
    sampler = transformers_backend.sample
    transformers_backend.sample = wrapped(sampler, "sampling")
    try:
        start = time.perf_counter()
        out = backend.generate(split_prompts, sampling, seed=42)
        total = time.perf_counter() - start
    finally:
        transformers_backend.sample = sampler
    decoded = sum(o.num_tokens for o in out)
    prompt_tokens = sum(len(backend.tokenizer(p + s)["input_ids"]) for p, s in split_prompts)

    def bound(names, tokens, rows):  # compute-bound seconds of these linear shapes for `tokens` tokens
        return sum(
            tokens * count * 2 * k * n / rates[rows][name] for name, (k, n, count) in shapes.items() if name in names
        )

    attention_names, mlp_names = ("q_proj", "k_proj/v_proj", "o_proj"), ("gate_proj/up_proj", "down_proj")
    rows = []
    for stage, tokens, width in (("prefill", prompt_tokens, "512"), ("decode", decoded, "16")):
        forward = seconds[stage, "model forward"]
        parts = {
            "attention projections": (seconds[stage, "attention projections"], bound(attention_names, tokens, width)),
            "attention core (scores, softmax, cache)": (
                seconds[stage, "attention"] - seconds[stage, "attention projections"],
                None,
            ),
            "mlp": (seconds[stage, "mlp"], bound(mlp_names, tokens, width)),
            "lm head": (
                seconds[stage, "lm head"],
                bound(("lm_head",), tokens if stage == "decode" else len(split_prompts), width),
            ),
            "rest of the forward (embeddings, norms)": (
                forward - seconds[stage, "attention"] - seconds[stage, "mlp"] - seconds[stage, "lm head"],
                None,
            ),
            "our attention masks": (seconds[stage, "our masks"], None),
        }
        if stage == "decode":
            loop = (
                total
                - seconds["prefill", "total"]
                - forward
                - seconds[stage, "our masks"]
                - seconds[stage, "sampling"]
            )
            parts["sampling (top-p)"] = (seconds[stage, "sampling"], None)
            parts["loop: stop strings, cache bookkeeping, Python"] = (loop, None)
        else:
            parts["prefill outside the forward (encoding, cache copies)"] = (
                seconds[stage, "total"] - forward - seconds[stage, "our masks"],
                None,
            )
        for part, (spent, limit) in parts.items():
            rows.append(
                {
                    "phase": stage,
                    "part": part,
                    "seconds": round(spent, 2),
                    "share": round(spent / total, 3),
                    "compute_bound_seconds": None if limit is None else round(limit, 2),
                }
            )
    return rows


def dpo_profile(threads: int) -> list[dict]:
    """Where a DPO step's time goes: torch's profiler over the default run's DPO phase after its first step,
    self CPU time per operator grouped into matmuls, attention, element-wise work, copies and the optimizer;
    the wall time the operators do not account for is Python, TRL's batching and the profiler itself."""
    import torch
    from dpo import OURS, pairs_file, train_variant
    from transformers import TrainerCallback

    groups = {
        "matmuls (forward and backward)": ("mm", "linear", "matmul", "onednn", "mkldnn"),
        "attention (scores, softmax)": ("attention", "softmax", "sdpa"),
        "optimizer (AdamW)": ("foreach", "adam"),
        "copies, casts, layout": (
            "copy",
            "cat",
            "index",
            "clone",
            "contiguous",
            "_to",
            "pad",
            "stack",
            "fill",
            "zero",
        ),
    }

    class Profile(TrainerCallback):
        def __init__(self):
            self.profiler, self.start, self.wall = None, 0.0, 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 1 and self.profiler is None:
                self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                self.profiler.__enter__()
                self.start = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            if self.profiler is not None:
                self.wall = time.perf_counter() - self.start
                self.profiler.__exit__(None, None, None)

    torch.set_num_threads(threads)
    profile = Profile()
    with tempfile.TemporaryDirectory() as tmp:
        train_variant(OURS, pairs_file(Path(tmp)), tmp, dpo_callbacks=[profile])
    spent: dict[str, float] = dict.fromkeys([*groups, "element-wise and reductions"], 0.0)
    for event in profile.profiler.key_averages():
        name = event.key.lower()
        group = next((g for g, keys in groups.items() if any(k in name for k in keys)), "element-wise and reductions")
        spent[group] += event.self_cpu_time_total / 1e6
    spent["outside torch operators (Python, TRL batching, profiler)"] = profile.wall - sum(spent.values())
    top = sorted(profile.profiler.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]
    return [
        {"phase": "dpo steps 2-", "part": part, "seconds": round(value, 2), "share": round(value / profile.wall, 3)}
        for part, value in spent.items()
    ] + [
        {
            "phase": "top operators",
            "part": f"{e.key} ({e.count} calls)",
            "seconds": round(e.self_cpu_time_total / 1e6, 2),
            "share": round(e.self_cpu_time_total / 1e6 / profile.wall, 3),
        }
        for e in top
    ]


def dpo_tokens(pairs: Path) -> tuple[int, float]:
    """(tokens one DPO epoch feeds the policy: prompt + answer, both answers, truncated as in training;
    share of them that are answer tokens, the only ones through the LM head)."""
    from maximalcai import tables
    from maximalcai.config import load_config_file
    from maximalcai.models import load_tokenizer

    training = load_config_file(REPO / "config.yaml")["stages"][0]["training"]
    tokenizer = load_tokenizer(REPO / "results/models/base")
    tokens = completion = 0
    for p in tables.read_table(pairs, "pairs"):
        if p["split"] != "train":
            continue
        prompt = len(tokenizer(p["prompt"])["input_ids"])
        for answer in (p["chosen"], p["rejected"]):
            total = min(training["max_length"], prompt + len(tokenizer(answer)["input_ids"]) + 1)
            tokens, completion = tokens + total, completion + max(0, total - prompt)
    return tokens * training["num_train_epochs"], completion / tokens


def dpo_step(threads: int) -> dict:
    """One default-settings DPO run (benchmarks/dpo.py's child, maximalcai's settings) and its tokens/s."""
    from dpo import OURS, child_environment, pairs_file

    with tempfile.TemporaryDirectory() as tmp:
        pairs = pairs_file(Path(tmp))
        out = subprocess.run(
            [sys.executable, str(REPO / "benchmarks/dpo.py"), "--child", OURS, str(threads), str(pairs), tmp],
            capture_output=True,
            text=True,
            env=child_environment(OURS),
        )
        if out.returncode:
            raise RuntimeError(f"benchmarks/dpo.py failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        tokens, share = dpo_tokens(pairs)
    result.update(
        tokens=tokens, completion_share=round(share, 3), tokens_per_s=round(tokens / result["dpo_seconds"], 1)
    )
    return result


def saved_shapes_and_rates(report: dict, threads: str) -> tuple[dict, dict]:
    """A saved run's linear shapes and, at one thread count, its measured matmul rates in FLOP/s by row count
    ("16", "512") and shape, in the run's dtype."""
    shapes = {k: tuple(v) for k, v in report["shapes"].items()}
    measured = report["threads"][threads]["matmul_gflops"][report["dtype"]]
    return shapes, {rows: {k: v * 1e9 for k, v in r.items()} for rows, r in measured.items()}


def workloads(report: dict, threads: str) -> dict[str, dict]:
    """Ours, llama.cpp, the compute-bound limit and the two ratios per workload, from one thread count's
    measurements. Generation's limit counts its prompts' prefill (at the 512-row rates) as well as its
    decoding (at the 16-row rates): both are the work of answering the prompts."""
    shapes, rates = saved_shapes_and_rates(report, threads)
    measured = report["threads"][threads]
    decode = limit_per_token(shapes, rates["16"])
    prefill = limit_per_token(shapes, rates["512"], lm_head_share=0.0)
    gen, score = measured["ours"]["generation"], measured["ours"]["scoring"]
    rows = {
        "generation": (
            gen["tokens"] / gen["seconds"],
            measured["llama_cpp"]["generation_tok_s"],
            gen["tokens"] / (gen["prompt_tokens"] / prefill + gen["tokens"] / decode),
        ),
        "scoring": (score["tokens"] / score["seconds"], measured["llama_cpp"]["scoring_tok_s"], prefill),
    }
    if "dpo" in measured:
        dpo = measured["dpo"]
        # policy forward + backward through frozen weights (input gradients only) + reference forward
        limit = limit_per_token(shapes, rates["512"], lm_head_share=dpo["completion_share"], passes=3)
        rows["dpo step"] = (dpo["tokens_per_s"], None, limit)
    return {
        name: {
            "ours_tok_s": round(ours, 1),
            "llama_cpp_tok_s": None if peer is None else round(peer, 1),
            "limit_tok_s": round(limit, 1),
            "vs_llama_cpp": None if peer is None else round(ours / peer, 2),
            "of_limit": round(ours / limit, 2),
        }
        for name, (ours, peer, limit) in rows.items()
    }


def workload_table(report: dict) -> str:
    """Each workload at each thread count: ours, llama.cpp's, the compute-bound limit and the two ratios (the
    docs draw this table from the results file: benchmarks/doc_tables.py, kind ``limits``)."""
    lines = [
        "| workload | threads | ours (tok/s) | llama.cpp (tok/s) | limit (tok/s) | ours / llama.cpp | ours / limit |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    table = {t: workloads(report, t) for t in report["threads"]}
    for name in next(iter(table.values())):
        for threads, rows in table.items():
            r = rows[name]
            peer = "-" if r["llama_cpp_tok_s"] is None else f"{r['llama_cpp_tok_s']}"
            ratio = "-" if r["vs_llama_cpp"] is None else f"{r['vs_llama_cpp']:.2f}x"
            ours, limit = r["ours_tok_s"], r["limit_tok_s"]
            lines.append(f"| {name} | {threads} | {ours} | {peer} | {limit} | {ratio} | {r['of_limit']:.0%} |")
    return "\n".join(lines) + "\n"


def format_report(report: dict) -> str:
    lines = [workload_table(report).rstrip("\n")]
    for threads, measured in report["threads"].items():
        for workload, rows in measured.get("profile", {}).items():
            lines += [
                f"\nWhere the time goes: {workload}, {threads} thread(s)\n",
                "| phase | part | seconds | share | compute-bound seconds |",
                "|---|---|---:|---:|---:|",
            ]
            for r in rows:
                bound = "" if r.get("compute_bound_seconds") is None else r["compute_bound_seconds"]
                lines.append(f"| {r['phase']} | {r['part']} | {r['seconds']} | {r['share']:.0%} | {bound} |")
    for threads, measured in report["threads"].items():
        fixed, refill = measured["ours"].get("generation_fixed_batches"), measured["ours"]["generation"]
        if fixed:  # runs before 2026-11-27 measured fixed batches only
            rate = fixed["tokens"] / fixed["seconds"]
            speedup = refill["tokens"] / refill["seconds"] / rate
            lines.append(
                f"\nthreads={threads}: fixed batches {rate:.1f} tok/s; continuous batching {speedup:.2f}x that"
            )
    return "\n".join(lines)


def add_profiles(saved: Path, threads: list[int], count: int, max_new_tokens: int) -> None:
    """Profile generation (the same prompts and sampling as the saved run) and a DPO step at each thread count,
    and store the rows in the saved run's JSON beside its measurements."""
    import torch

    from maximalcai.backends import Sampling

    report = json.loads(saved.read_text())
    model_dir = base_model_dir()
    sampling = Sampling(temperature=0.8, top_p=0.95, max_new_tokens=max_new_tokens)
    for thread_count in threads:
        torch.set_num_threads(thread_count)
        measured = report["threads"][str(thread_count)]
        shapes, rates = saved_shapes_and_rates(report, str(thread_count))
        measured["profile"] = {
            "generation": generation_profile(model_dir, prompts(count, 1), sampling, shapes, rates),
            "dpo": dpo_profile(thread_count),
        }
        saved.write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--skip-dpo", action="store_true")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/limits.json"))
    parser.add_argument("--report", type=Path, help="print the table of a saved run and exit")
    parser.add_argument(
        "--profile", type=Path, help="add where the time goes (generation, a DPO step) at --threads to a saved run"
    )
    args = parser.parse_args()
    if args.report:
        print(format_report(json.loads(args.report.read_text())))
        return
    if args.profile:
        add_profiles(args.profile, args.threads, args.prompts, args.max_new_tokens)
        return

    import torch

    from maximalcai import formats
    from maximalcai.backends import Sampling
    from maximalcai.hardware import resolve_dtype

    model_dir = base_model_dir()
    config = json.loads((model_dir / "config.json").read_text())
    shapes = linear_shapes(config)
    dtype = resolve_dtype("auto", "cpu")
    sampling = Sampling(temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens)
    separate = prompts(args.prompts, 1)  # every prompt its own few-shot prefix, so nothing is shared
    plain = [p + s for p, s in separate]
    report: dict = {
        "machine": {"cpu": cpu_model(), "torch": torch.__version__},
        "dtype": str(dtype).removeprefix("torch."),
        "prompts": args.prompts,
        "max_new_tokens": args.max_new_tokens,
        "model_flops_per_token": flops_per_token(shapes),
        "shapes": {k: list(v) for k, v in shapes.items()},
        "threads": {},
    }
    for threads in args.threads:
        torch.set_num_threads(threads)
        measured: dict = {
            "matmul_gflops": {
                str(d).removeprefix("torch."): {
                    str(rows): {name: round(matmul_rate(rows, k, n, d) / 1e9, 1) for name, (k, n, _) in shapes.items()}
                    for rows in (16, 512)
                }
                for d in (torch.float32, torch.bfloat16)
            }
        }
        tokens, seconds = our_generation(model_dir, separate, sampling)
        fixed_tokens, fixed_seconds = our_generation(model_dir, separate, sampling, refill=False)
        prompt_tokens, scoring_seconds = our_scoring(model_dir, separate, [" Yes", " No"])
        measured["ours"] = {
            "generation": {"tokens": tokens, "seconds": round(seconds, 2), "prompt_tokens": prompt_tokens},
            "generation_fixed_batches": {"tokens": fixed_tokens, "seconds": round(fixed_seconds, 2)},
            "scoring": {"tokens": prompt_tokens, "seconds": round(scoring_seconds, 2)},
        }
        peer = LlamaCppBatched(threads, slots=16)
        peer.generate(plain[:2], sampling, tuple(formats.STOP_STRINGS), seed=1)  # warm-up
        start = time.perf_counter()
        tokens = peer.generate(plain, sampling, tuple(formats.STOP_STRINGS))
        measured["llama_cpp"] = {"generation_tok_s": round(tokens / (time.perf_counter() - start), 1)}
        start = time.perf_counter()
        tokens = peer.prompt_processing(plain)
        measured["llama_cpp"]["scoring_tok_s"] = round(tokens / (time.perf_counter() - start), 1)
        peer.close()
        if not args.skip_dpo:
            measured["dpo"] = dpo_step(threads)
        report["threads"][str(threads)] = measured
        print(f"threads={threads} {json.dumps(measured['ours'])} llama.cpp {measured['llama_cpp']}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
