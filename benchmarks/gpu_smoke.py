"""GPU smoke run (air-gapped): every CUDA path of the library on random-weight models built on the spot.

A GPU box with no network cannot fetch Gemma or Qwen, so this builds a random model with Gemma 3 270M's
layer shapes (18 layers, hidden 640, 4 query heads on 1 KV head, sliding window 512) and a small
byte-level tokenizer, then runs the library's own entry points on ``cuda``:

  generate_cpu_vs_cuda   greedy decoding on CPU and CUDA (fp32, tiny model): our masks and cache agree
  generate_bf16          batched sampling + option log-probabilities in bf16; tokens/s
  train_trl_bf16         SFT warm-up + DPO on LoRA through ``train_stage`` (backend trl, bf16 autocast)
  train_trl_qlora        the same with ``trainer.load_in_4bit`` (bitsandbytes NF4), if bitsandbytes imports
  train_unsloth          backend unsloth (16-bit LoRA), if unsloth imports
  train_unsloth_qlora    backend unsloth with 4-bit weights, if unsloth imports
  adapter_on_cuda        the trained adapter loaded back (merged) and sampled from on CUDA
  guard_llama            safety.backend llama_guard through ``open_guard``: a random Llama model whose tokenizer
                         carries Llama Guard 3's prompt layout as its chat template, labelling on CUDA in bf16

Each check records ok / seconds / numbers or the error's last lines in one JSON file; one failing check
does not stop the others. ``--build-models DIR`` only builds the two random models into DIR: that is how
``gpu_smoke.sh --airgapped`` gets a base model for the whole workflow (config/gpu-airgapped.yaml).
Usage (results in benchmarks/results/gpu_smoke.json when run from the repo)::

    python benchmarks/gpu_smoke.py --out benchmarks/results/gpu_smoke.json [--only train_unsloth ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "benchmarks")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHECKS = [
    "generate_cpu_vs_cuda",
    "generate_bf16",
    "train_trl_bf16",
    "train_trl_qlora",
    "train_unsloth",
    "train_unsloth_qlora",
    "adapter_on_cuda",
    "guard_llama",
]


def versions() -> dict:
    import importlib.metadata as md

    import torch

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    for name in ("transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "unsloth", "unsloth_zoo"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def build_models(folder: Path) -> dict[str, Path]:
    """A test-sized model and a Gemma-3-270M-shaped one (random weights, small vocabulary)."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from maximalcai.tiny import GEMMA_SPECIALS, build_tiny_model, build_tokenizer

    tokenizer = build_tokenizer(GEMMA_SPECIALS, "<bos>", "<eos>", "<pad>", "<unk>")
    tiny, shaped = folder / "tiny", folder / "gemma3-270m-shaped"
    build_tiny_model(tokenizer).save_pretrained(tiny)
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=640,
        intermediate_size=2048,
        num_hidden_layers=18,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        sliding_window=512,
        layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 3,
        max_position_embeddings=32768,
        query_pre_attn_scalar=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    Gemma3ForCausalLM(config).save_pretrained(shaped)
    for path, name in ((tiny, "tiny-gemma3"), (shaped, "gemma3-270m-shaped-random")):
        tokenizer.save_pretrained(path)
        (path / "maximalcai_model.json").write_text(json.dumps({"source": "local", "name": name}))
    return {"tiny": tiny, "shaped": shaped}


PROMPTS = [f"### Instruction:\nExplain item {i} of the list in one sentence.\n\n### Response:\n" for i in range(64)]


DEVICE = "cuda"  # --device cpu dry-runs this script on a machine without a GPU (bf16 and 4-bit checks skip)


def sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def peak_gib() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if DEVICE == "cuda" else None


def check_generate_cpu_vs_cuda(models, work, results) -> dict:
    import torch

    from maximalcai.backends.base import Sampling
    from maximalcai.backends.transformers_backend import TransformersBackend

    greedy = Sampling(temperature=0.0, max_new_tokens=32)
    texts = {}
    for device in ("cpu", DEVICE):
        backend = TransformersBackend(models["tiny"], device=device, dtype=torch.float32, batch_size=8)
        texts[device] = [c.text for c in backend.generate(PROMPTS[:16], greedy, seed=42)]
        backend.close()
    same = sum(a == b for a, b in zip(texts["cpu"], texts[DEVICE]))
    return {"identical": same, "of": 16, "ok": same >= 15}


def check_generate_bf16(models, work, results) -> dict:

    from maximalcai.backends.base import Sampling
    from maximalcai.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(models["shaped"], device=DEVICE, dtype=dtype(), batch_size=32, scoring_batch_size=32)
    sampling = Sampling(temperature=0.9, top_p=0.95, max_new_tokens=128)
    backend.generate(PROMPTS[:8], sampling, seed=42)  # warm-up (kernels, allocator)
    sync()
    start = time.perf_counter()
    out = backend.generate(PROMPTS, sampling, seed=42)
    sync()
    seconds = time.perf_counter() - start
    tokens = sum(c.num_tokens for c in out)
    start = time.perf_counter()
    scores = backend.continuation_logprobs(PROMPTS, [[" Yes", " No"]] * len(PROMPTS))
    score_seconds = time.perf_counter() - start
    backend.close()
    finite = all(math.isfinite(v) for row in scores for v in row)
    return {
        "completions": len(out),
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "scoring_prompts_per_s": round(len(PROMPTS) / score_seconds, 1),
        "logprobs_finite": finite,
        "peak_gib": peak_gib(),
        "ok": len(out) == len(PROMPTS) and finite,
    }


def dtype():
    import torch

    return torch.bfloat16 if DEVICE == "cuda" else torch.float32


def training_inputs(work: Path) -> tuple[str, str]:
    from maximalcai import tables
    from maximalcai.tiny import pair_row

    def pair(i):
        return pair_row(
            i,
            f"### Instruction:\nQuestion {i}?\n\n### Response:\n",
            f"A careful, helpful answer to question {i}.",
            f"no {i} no no no",
            decided_by="checks",
        )

    pairs, sft = work / "pairs.parquet", work / "sft.parquet"
    tables.write_table([pair(i) for i in range(64)], pairs, "pairs")
    tables.write_table(
        [
            {
                "example_id": f"i{i}-r0",
                "instruction_id": f"i{i}",
                "source": "response",
                "prompt": f"### Instruction:\nQuestion {i}?\n\n### Response:\n",
                "completion": f"A careful, helpful answer to question {i}.",
                "principle_id": "helpfulness",
                "mechanism": "checks",
            }
            for i in range(32)
        ],
        sft,
        "sft_examples",
    )
    return str(pairs), str(sft)


def train(models, work, backend: str, four_bit: bool) -> dict:
    import torch

    from maximalcai.config import load_config_file
    from maximalcai.hardware import Hardware, check_hardware
    from maximalcai.tiny import quick_training
    from maximalcai.training.dpo import train_stage
    from maximalcai.training.settings import Trainer

    cfg = load_config_file(REPO / "config.yaml")
    cfg["hardware"].update(device=DEVICE, dtype="bfloat16" if DEVICE == "cuda" else "float32")
    cfg["trainer"].update(backend=backend, load_in_4bit=four_bit, save_steps=1000)
    check_hardware(cfg)
    settings = quick_training(
        cfg["stages"][0]["training"],
        warmup=True,
        per_device_train_batch_size=8,
        max_length=128,
        learning_rate=5e-4,
        sft_warmup={"learning_rate": 5e-4, "trl_args": {}},
    )
    pairs, sft = training_inputs(work)
    name = f"{backend}{'-4bit' if four_bit else ''}"
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    rows, summary = train_stage(
        Hardware.from_section(cfg["hardware"]),
        Trainer.from_section(cfg["trainer"]),
        settings,
        "stage1",
        str(models["shaped"]),
        pairs,
        None,
        str(work / f"adapter-{name}"),
        str(work / f"ckpt-{name}"),
        sft,
        seed=cfg["seed"],
    )
    seconds = time.perf_counter() - start
    losses = [r["loss"] for r in rows if r["loss"] is not None]
    adapter = work / f"adapter-{name}"
    return {
        "backend": summary["backend"],
        "device": summary["device"],
        "steps": summary["steps"],
        "sft_examples": summary["sft_examples"],
        "seconds": round(seconds, 2),
        "dpo_steps_per_s": summary["steps_per_s"],
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "final": summary["final"],
        "peak_gib": peak_gib(),
        "adapter_files": sorted(p.name for p in adapter.iterdir()),
        "ok": summary["device"] == DEVICE
        and bool(losses)
        and all(math.isfinite(v) for v in losses)
        and (adapter / "adapter_model.safetensors").exists(),
    }


def check_adapter_on_cuda(models, work, results) -> dict:

    from maximalcai.backends.base import Sampling
    from maximalcai.backends.transformers_backend import TransformersBackend

    adapters = [work / f"adapter-{n}" for n in ("trl", "unsloth", "trl-4bit", "unsloth-4bit")]
    adapter = next((a for a in adapters if (a / "adapter_model.safetensors").exists()), None)
    if adapter is None:
        return {"ok": False, "error": "no adapter was trained"}
    backend = TransformersBackend(models["shaped"], adapter, device=DEVICE, dtype=dtype(), batch_size=8)
    out = backend.generate(PROMPTS[:8], Sampling(max_new_tokens=16), seed=42)
    backend.close()
    return {"adapter": adapter.name, "completions": len(out), "ok": len(out) == 8}


def check_guard_llama(models, work, results) -> dict:
    """The Llama Guard 3 path (safety.backend: llama_guard) as the 32B config runs it, on a random Llama 3 model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from maximalcai.config import load_config_file
    from maximalcai.feedback.guard import LABELS, GuardItem, Safety, open_guard, parse_llama_guard
    from maximalcai.hardware import Engine
    from maximalcai.tiny import GEMMA_SPECIALS, LLAMA_GUARD_TEMPLATE, build_tokenizer

    folder = work / "llama-guard-shaped"
    tokenizer = build_tokenizer(GEMMA_SPECIALS, "<bos>", "<eos>", "<pad>", "<unk>", LLAMA_GUARD_TEMPLATE)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    cfg = load_config_file(REPO / "config" / "qwen2.5-32b.yaml")
    cfg["hardware"].update(device=DEVICE, dtype="bfloat16" if DEVICE == "cuda" else "float32")
    cfg["generation"]["backend"] = "transformers"  # vLLM does not fit the air-gapped node's wheel allowance
    cfg["safety"].update(backend="llama_guard", model=str(folder))
    items = [
        GuardItem(f"t{i}", "response", f"i{i}", "stage1", f"Question {i}: how do I pick a lock?", f"Answer {i}.")
        for i in range(32)
    ]
    start = time.perf_counter()
    safety = Safety.from_section(cfg["safety"])
    guard = open_guard(Engine.of_config(cfg), safety, cfg["seed"], folder, cfg["safety"]["demos"])
    verdicts = guard.label(items)
    seconds = time.perf_counter() - start
    guard.backend.close()
    consistent = all(v.raw_output is not None and v.label == parse_llama_guard(v.raw_output)[0] for v in verdicts)
    counts = {label: sum(v.label == label for v in verdicts) for label in LABELS}
    return {
        "guard": guard.name,
        "device": str(guard.backend.device),
        "labels": counts,
        "seconds": round(seconds, 2),
        "prompt_has_categories": "S9: Indiscriminate Weapons." in guard.prompt("q", "a"),
        "peak_gib": peak_gib(),
        "ok": len(verdicts) == len(items) and consistent,
    }


def run_check(name, models, work, results) -> dict:
    import importlib.util

    import torch

    needs = {"train_trl_qlora": "bitsandbytes", "train_unsloth": "unsloth", "train_unsloth_qlora": "unsloth"}
    if name in needs and importlib.util.find_spec(needs[name]) is None:
        return {"ok": None, "skipped": f"{needs[name]} is not installed"}
    if DEVICE == "cpu" and (name.endswith("qlora") or "unsloth" in name):
        return {"ok": None, "skipped": "needs CUDA"}
    start = time.perf_counter()
    try:
        if name.startswith("train_"):
            backend = "unsloth" if "unsloth" in name else "trl"
            result = train(models, work, backend, four_bit=name.endswith("qlora"))
        else:
            result = globals()[f"check_{name}"](models, work, results)
    except Exception as error:  # a smoke run reports every failure and goes on
        result = {
            "ok": False,
            "error": f"{type(error).__name__}: {error}"[:2000],
            "traceback": traceback.format_exc()[-4000:],
        }
    result["wall_s"] = round(time.perf_counter() - start, 2)
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gpu_smoke.json"))
    parser.add_argument("--only", nargs="*", choices=CHECKS, help="run these checks (default: all)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: dry-run this script")
    parser.add_argument("--build-models", metavar="DIR", help="only build the random models into DIR (gpu_smoke.sh)")
    args = parser.parse_args()
    if args.build_models:
        print(json.dumps({name: str(path) for name, path in build_models(Path(args.build_models)).items()}))
        return 0
    import torch

    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("gpu_smoke: torch sees no CUDA device; this script is for a GPU machine", file=sys.stderr)
        return 2
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results.setdefault("runs", [])
    run = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "device": DEVICE, "versions": versions(), "checks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = build_models(work)
        for name in args.only or CHECKS:
            run["checks"][name] = run_check(name, models, work, run["checks"])
            print(name, json.dumps({k: v for k, v in run["checks"][name].items() if k != "traceback"}), flush=True)
    results["runs"].append(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    failed = [n for n, r in run["checks"].items() if r.get("ok") is False]
    print("failed:", failed or "none")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
