"""The 32B plan's throughput, measured on slices of Qwen2.5-32B (random weights) and extrapolated in depth.

``budget.throughput`` in config/qwen2.5-32b.yaml drives the GPU-hour plan. A GPU box without the hub cannot
load the real 32B checkpoint, and a 64-layer random one would take most of a short lease to build, so this
builds Qwen2.5-32B's exact layer (hidden 5120, MLP 27648, 40 query heads on 8 KV heads, vocabulary 152,064)
stacked 4, 8 and 16 deep (after a 1-layer warm-up model that the fit leaves out: the first model on a fresh
GPU carries CUDA's start-up) and times the library's own code paths on each:

  scoring     TransformersBackend.continuation_logprobs, bf16: prefill tokens/s (guard, preference, eval)
  generation  TransformersBackend.generate, bf16, batch 64, sampled: generated tokens/s (vLLM is faster;
              its wheel does not fit an air-gapped box, so this is the floor)
  sft / dpo   run_phase (the trainer setup train_stage uses) with bitsandbytes NF4 QLoRA, LoRA r16 on all
              linear layers, gradient checkpointing, the plan's batch size and sequence lengths: tokens/s of
              an optimizer step after the first (DPO: prompt+chosen and prompt+rejected, reference pass included)

Seconds per unit of work are fitted as ``a + b * layers`` (least squares over the depths); 64 layers give
the 32B figure. The fit's residuals are printed: a straight line is the assumption to check. Usage::

    python benchmarks/gpu_throughput.py --out benchmarks/results/gpu_throughput.json
    python benchmarks/gpu_throughput.py --report benchmarks/results/gpu_throughput.json   # the table again
    python benchmarks/gpu_throughput.py --device cpu --shrink 40 --layers 1 2   # dry run of this script
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "benchmarks")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from gpu_smoke import versions  # noqa: E402  (benchmarks/ is on sys.path when a script in it runs)

QWEN32B = dict(
    hidden_size=5120,
    intermediate_size=27648,
    num_attention_heads=40,
    num_key_value_heads=8,
    vocab_size=152064,
    layers=64,
)


def build_model(folder: Path, layers: int, shrink: int, device: str) -> Path:
    """Qwen2.5-32B's decoder layer ``layers`` deep (dimensions divided by ``shrink`` for a dry run)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from maximalcai.tiny import QWEN_SPECIALS, build_tokenizer

    tokenizer = build_tokenizer(QWEN_SPECIALS, None, "<|endoftext|>", "<|endoftext|>", None)
    heads = max(1, QWEN32B["num_attention_heads"] // shrink)
    kv = max(1, QWEN32B["num_key_value_heads"] // shrink)
    config = Qwen2Config(
        vocab_size=QWEN32B["vocab_size"] // shrink,
        hidden_size=heads * 128,
        intermediate_size=QWEN32B["intermediate_size"] // shrink,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        use_sliding_window=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)
    torch.set_default_dtype(previous)
    path = folder / f"qwen32b-slice-{layers}"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "maximalcai_model.json").write_text(json.dumps({"source": "local", "name": path.name}))
    del model
    return path


def texts(tokenizer, count: int, tokens: int, offset: int = 0) -> list[str]:
    """``count`` distinct texts of about ``tokens`` tokens each, from the repository's own pools."""
    from maximalcai.tiny import corpus

    words = " ".join(corpus()).split()
    out = []
    for i in range(count):
        start = (offset + i * 977) % max(1, len(words) - 4 * tokens)
        text, n = "", 0
        for word in words[start:]:
            text += word + " "
            n += 1
            if n % 16 == 0 and len(tokenizer(text).input_ids) >= tokens:
                break
        out.append(f"{i}: {text.strip()}")
    return out


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def time_inference(path: Path, device: str, lengths: dict) -> dict:
    import torch

    from maximalcai.backends.base import Sampling
    from maximalcai.backends.transformers_backend import TransformersBackend

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    backend = TransformersBackend(
        path,
        device=device,
        dtype=dtype,
        batch_size=lengths["generation_batch"],
        scoring_batch_size=lengths["scoring_batch"],
    )
    tok = backend.tokenizer
    prompts = texts(tok, lengths["scoring_prompts"], lengths["scoring_tokens"])
    backend.continuation_logprobs(prompts[:4], [[" safe", " unsafe"]] * 4)  # warm-up
    sync(device)
    start = time.perf_counter()
    backend.continuation_logprobs(prompts, [[" safe", " unsafe"]] * len(prompts))
    sync(device)
    scoring_s = time.perf_counter() - start
    scored = sum(len(tok(p).input_ids) + 2 for p in prompts)
    gen_prompts = texts(tok, lengths["generation_batch"], lengths["generation_prompt_tokens"], offset=5)
    sampling = Sampling(temperature=0.8, top_p=0.95, max_new_tokens=lengths["generation_new_tokens"])
    backend.generate(gen_prompts[:4], Sampling(max_new_tokens=8), seed=1, stop=())  # warm-up
    sync(device)
    start = time.perf_counter()
    out = backend.generate(gen_prompts, sampling, seed=42, stop=())
    sync(device)
    generation_s = time.perf_counter() - start
    generated = sum(c.num_tokens for c in out)
    backend.close()
    return {
        "scored_tokens": scored,
        "scoring_s": round(scoring_s, 3),
        "generated_tokens": generated,
        "generation_s": round(generation_s, 3),
    }


def time_training(path: Path, work: Path, device: str, lengths: dict, four_bit: bool) -> dict:
    """SFT then DPO through run_phase, seconds per optimizer step after the first."""
    import copy

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from maximalcai.config import load_config_file
    from maximalcai.training.dpo import load_policy, loss_types, run_phase
    from maximalcai.training.settings import Trainer, Training

    cfg = load_config_file(REPO / "config.yaml")
    big = load_config_file(REPO / "config" / "qwen2.5-32b.yaml")
    cfg["hardware"].update(device=device, dtype="bfloat16" if device == "cuda" else "float32")
    cfg["trainer"].update(backend="trl", load_in_4bit=four_bit, gradient_checkpointing=True, save_steps=100000)
    section = copy.deepcopy(cfg["stages"][0]["training"])
    keys = ("per_device_train_batch_size", "max_length", "lora", "beta")
    section.update({k: big["stage_defaults"]["training"][k] for k in keys})
    section.update(
        num_train_epochs=1, gradient_accumulation_steps=lengths["grad_accum"], warmup_steps=0.0, max_steps=-1
    )
    settings = Training.from_section(section)
    steps = lengths["steps"]
    per_step = settings.per_device_train_batch_size * settings.gradient_accumulation_steps

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds = []

        def on_step_begin(self, args, state, control, **kwargs):
            sync(device)
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync(device)
            self.seconds.append(time.perf_counter() - self.start)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model, tokenizer, peft_config = load_policy(
        str(path), None, settings, Trainer.from_section(cfg["trainer"]), device, "trl", cfg["seed"]
    )
    prompts = [p + "\n\n### Response:\n" for p in texts(tokenizer, steps * per_step, lengths["prompt_tokens"])]
    answers = texts(tokenizer, steps * per_step * 2, lengths["response_tokens"], offset=11)
    sft_rows = [{"prompt": p, "completion": a} for p, a in zip(prompts, answers[::2])]
    sft_timer, dpo_timer = StepTimer(), StepTimer()
    model, _ = run_phase(
        SFTTrainer,
        SFTConfig,
        model,
        tokenizer,
        peft_config,
        Dataset.from_list(sft_rows),
        dataclasses.replace(settings, learning_rate=2e-5),
        Trainer.from_section(cfg["trainer"]),
        cfg["seed"],
        work / "sft",
        device,
        "sft",
        callbacks=[sft_timer],
        trl_args={},
    )
    sft_seconds = sft_timer.seconds
    pairs = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in zip(prompts, answers[::2], answers[1::2])]
    model, rows = run_phase(
        DPOTrainer,
        DPOConfig,
        model,
        tokenizer,
        None,
        Dataset.from_list(pairs),
        settings,
        Trainer.from_section(cfg["trainer"]),
        cfg["seed"],
        work / "dpo",
        device,
        "dpo",
        callbacks=[dpo_timer],
        beta=settings.beta,
        loss_type=loss_types("sigmoid"),
        loss_weights=None,
        disable_dropout=True,
        trl_args={},
    )
    dpo_seconds = dpo_timer.seconds
    count = lambda text: len(tokenizer(text).input_ids)  # noqa: E731
    sft_tokens = statistics.mean(count(r["prompt"]) + count(r["completion"]) for r in sft_rows) * per_step
    dpo_tokens = (
        statistics.mean(2 * count(p["prompt"]) + count(p["chosen"]) + count(p["rejected"]) for p in pairs) * per_step
    )
    peak = round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {
        "sft_step_s": [round(s, 3) for s in sft_seconds],
        "dpo_step_s": [round(s, 3) for s in dpo_seconds],
        "sft_tokens_per_step": round(sft_tokens),
        "dpo_tokens_per_step": round(dpo_tokens),
        "final_dpo_loss": rows[-1]["loss"] if rows else None,
        "peak_gib": peak,
    }


def fit(depths: list[int], seconds: list[float], target: int) -> dict:
    """Least-squares a + b*layers, its value at ``target`` layers, and the relative residuals."""
    mean_x, mean_y = statistics.mean(depths), statistics.mean(seconds)
    b = sum((x - mean_x) * (y - mean_y) for x, y in zip(depths, seconds)) / sum((x - mean_x) ** 2 for x in depths)
    a = mean_y - b * mean_x
    residuals = [round((y - (a + b * x)) / y, 4) for x, y in zip(depths, seconds)]
    return {"fixed_s": a, "per_layer_s": b, "at_target_s": a + b * target, "relative_residuals": residuals}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gpu_throughput.json"))
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--layers", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--shrink", type=int, default=1, help="divide the dimensions (CPU dry run)")
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument("--report", metavar="RESULTS", help="print the table of the last run in RESULTS and stop")
    args = parser.parse_args()
    if args.report:
        print(report(json.loads(Path(args.report).read_text())["runs"][-1]))
        return 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_throughput: torch sees no CUDA device", file=sys.stderr)
        return 2
    small = args.shrink > 1
    from maximalcai.plan import TYPICAL_FILL

    lengths = {  # the plan's per-item sizes: response 512 * fill, instruction 96 * fill, guard prompt 450 + response
        "scoring_prompts": 8 if small else 64,
        "scoring_tokens": 64 if small else 750,
        "scoring_batch": 8,
        "generation_batch": 8 if small else 64,
        "generation_prompt_tokens": 32 if small else 200,
        "generation_new_tokens": 16 if small else 256,
        "prompt_tokens": 16 if small else round(96 * TYPICAL_FILL),
        "response_tokens": 32 if small else round(512 * TYPICAL_FILL),
        "grad_accum": 1 if small else 4,
        "steps": 3 if small else 4,
    }
    run = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": args.device,
        "versions": versions(),
        "shrink": args.shrink,
        "lengths": lengths,
        "warmup": None,
        "depths": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for layers in [0] + args.layers:  # 0: a 1-layer warm-up (CUDA context, kernels), kept out of the fit
            start = time.perf_counter()
            path = build_model(work, max(1, layers), args.shrink, args.device)
            entry = {"build_s": round(time.perf_counter() - start, 1)}
            entry.update(time_inference(path, args.device, lengths))
            if not args.no_training:
                entry.update(
                    time_training(path, work / f"train-{layers}", args.device, lengths, four_bit=args.device == "cuda")
                )
            if layers:
                run["depths"][layers] = entry
            else:
                run["warmup"] = entry
            print(layers, json.dumps(entry), flush=True)
            save(args.out, run)  # after each depth: a run cut short keeps what it measured
            for child in path.iterdir():
                child.unlink()
            path.rmdir()
    run["fits"] = fits(run)
    save(args.out, run)
    print(report(run))
    return 0


def fits(run: dict) -> dict:
    """Seconds per token of each workload, fitted over the depths and read off at 64 layers."""
    depths = {int(d): entry for d, entry in run["depths"].items()}
    units = {"scoring": ("scoring_s", "scored_tokens"), "generation": ("generation_s", "generated_tokens")}
    per_token = {name: [depths[d][s] / depths[d][n] for d in sorted(depths)] for name, (s, n) in units.items()}
    for phase in ("sft", "dpo"):
        if all(f"{phase}_step_s" in e for e in depths.values()):  # the first step (allocator, kernels) is left out
            per_token[phase] = [
                statistics.median(depths[d][f"{phase}_step_s"][1:]) / depths[d][f"{phase}_tokens_per_step"]
                for d in sorted(depths)
            ]
    out = {}
    for name, seconds in per_token.items():
        result = fit(sorted(depths), seconds, QWEN32B["layers"])
        result["tokens_per_s_at_64_layers"] = (
            round(1 / result["at_target_s"], 1) if result["at_target_s"] > 0 else None
        )
        out[name] = result
    return out


# Dense bf16 tensor-core peak (TFLOP/s) and memory bandwidth (TB/s) from NVIDIA's data sheets (SXM parts).
PEAKS = {"H100": (989.4, 3.35), "A100": (312.0, 2.039)}
FORWARD_GFLOP_PER_TOKEN = 2 * (64 * 487.6e6 + 778.6e6) / 1e9  # 2 x (64 decoder layers + LM head) parameters
PASSES = {
    "scoring": 1,
    "generation": 1,
    "sft": 3,
    "dpo": 4,
}  # forward, checkpoint recompute, input gradients; + reference
PLAN_KEYS = {
    "scoring": "scoring_tokens_per_s",
    "generation": "generation_tokens_per_s",
    "sft": "sft_tokens_per_s",
    "dpo": "training_tokens_per_s",
}


def report(run: dict, measured_on: str = "H100", target: str = "A100") -> str:
    """Markdown table: tokens/s at 64 layers, the model FLOP utilisation, and the figure scaled to ``target``
    by the ratio of peak compute (bandwidth for decoding, which reads every weight per step)."""
    compute = PEAKS[target][0] / PEAKS[measured_on][0]
    bandwidth = PEAKS[target][1] / PEAKS[measured_on][1]
    lines = [
        f"| workload (budget.throughput key) | {measured_on}, 64 layers, tokens/s | fit residuals | "
        f"model FLOP utilisation | {target} estimate, tokens/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, result in run["fits"].items():
        rate = result["tokens_per_s_at_64_layers"]
        if rate is None:
            lines.append(f"| {name} ({PLAN_KEYS[name]}) | no fit | {result['relative_residuals']} | | |")
            continue
        mfu = rate * FORWARD_GFLOP_PER_TOKEN * PASSES[name] / (PEAKS[measured_on][0] * 1e3)
        scale, by = (bandwidth, "bandwidth") if name == "generation" else (compute, "compute")
        worst = max(abs(r) for r in result["relative_residuals"])
        lines.append(
            f"| {name} (`{PLAN_KEYS[name]}`) | {rate:,.0f} | max {worst:.1%} | {mfu:.0%} | "
            f"{rate * scale:,.0f} (x{scale:.3f}, {by}) |"
        )
    return "\n".join(lines)


def save(path: str, run: dict) -> None:
    """Append ``run`` to the results file, or replace it when this run was saved before."""
    out = Path(path)
    results = json.loads(out.read_text()) if out.exists() else {"runs": []}
    results["runs"] = [r for r in results["runs"] if r["date"] != run["date"]] + [run]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
