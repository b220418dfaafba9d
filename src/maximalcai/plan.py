"""The budget plan: estimated GPU hours and dollars per stage, before anything is launched.

The estimate multiplies each stage's counts (config) by token lengths per item and divides by throughput
figures kept in config (``budget.throughput``: generation tokens/s, scoring tokens/s, training tokens/s on
the budget's GPU, measured there), plus a fixed overhead per stage (model loads, job start-up). The
token lengths per item are the ``max_new_tokens`` caps scaled by ``TYPICAL_FILL`` (completions stop
before the cap) and prompt sizes from the few-shot settings. Edit the throughput figures after a
measured run; the manifests record real tokens/s per rule.

``snakemake plan`` prints the table. A GPU run whose total exceeds ``budget.max_usd`` is refused at
workflow start unless ``budget.allow_over_budget`` is true.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from maximalcai.config import stage_ids
from maximalcai.errors import ConfigError
from maximalcai.evaluation.sets import eval_set_paths, load_eval_prompts
from maximalcai.manifest import write_text_atomic

if TYPE_CHECKING:
    from maximalcai.contrast import Contrast
    from maximalcai.feedback.critique import Critique
    from maximalcai.feedback.preference import Preference
    from maximalcai.generation import Instructions, Responses
    from maximalcai.pairs import Pairs
    from maximalcai.training.settings import Training

logger = logging.getLogger(__name__)

TYPICAL_FILL = 0.6  # share of max_new_tokens a completion uses on average (stop strings end most earlier)
EXAMPLE_TOKENS = 120  # tokens per few-shot example (instruction + response)
DEMO_TOKENS = 350  # tokens per critique demonstration
GUARD_PROMPT_TOKENS = 450  # Llama Guard 3 prompt (category list) without the conversation
PREFERENCE_PROMPT_TOKENS = 250  # question, options and the few-shot demonstrations per comparison, excluding texts


@dataclass(frozen=True)
class StagePlan:
    """The typed sections of one stage that the plan counts from (the classes the stage's jobs read)."""

    instructions: Instructions
    responses: Responses
    critique: Critique
    preference: Preference
    training: Training
    pairs: Pairs
    contrast: Contrast

    @classmethod
    def of(cls, stage: dict[str, Any]) -> StagePlan:
        """From a resolved stage of the config (imported here: the Snakefile imports this module at start)."""
        from maximalcai.contrast import Contrast
        from maximalcai.feedback.critique import Critique
        from maximalcai.feedback.preference import Preference
        from maximalcai.generation import Instructions, Responses
        from maximalcai.pairs import Pairs
        from maximalcai.training.settings import Training

        sections = (Instructions, Responses, Critique, Preference, Training, Pairs, Contrast)
        return cls(*(section.from_section(stage[section.PATH[0]]) for section in sections))


def sft_examples(stage: StagePlan, contrast: dict[str, tuple[int, int]]) -> float:
    """Supervised warm-up examples of a stage, by source (0 when the warm-up is off); ``contrast``: its
    ``contrast_counts``."""
    if not stage.training.sft_warmup.enabled:
        return 0.0
    ins, cri, sft = stage.instructions, stage.critique, stage.pairs.sft
    count, constrained = ins.count, ins.count * ins.constraints.share
    per_source = {
        "responses": count,
        "revisions": count * min(cri.responses_per_instruction, stage.responses.per_instruction) * cri.rounds,
        "code_revisions": constrained * 0.5,  # about half of the constrained answers fail a check and get revised
        "constraint_variants": (count - constrained) * sft.variants_per_instruction,
        "contrast": sum(seeds + generated for seeds, generated in contrast.values()),
    }
    return sum(per_source[source] for source in sft.sources)


def item_counts(stage: StagePlan) -> tuple[int, int, int]:
    """Responses, critiqued responses and preference comparisons of one stage."""
    from maximalcai.generation import candidates_per_instruction

    ins, res, cri, pref = stage.instructions, stage.responses, stage.critique, stage.preference
    responses = ins.count * candidates_per_instruction(res)
    critiqued = ins.count * min(cri.responses_per_instruction, res.per_instruction) * cri.rounds
    comparisons = responses // 2 * ("responses" in pref.comparisons) + critiqued * ("revision" in pref.comparisons)
    return responses, critiqued, comparisons


def rule_tokens(stage: StagePlan, cfg: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Tokens each rule of one stage generates, reads (prefill and log-prob scoring) and trains on, in total
    over the stage's jobs of that rule; ``eval_generate`` is one model's evaluation."""
    ins, res, cri, pref = stage.instructions, stage.responses, stage.critique, stage.preference
    instruction_tokens = ins.sampling.max_new_tokens * TYPICAL_FILL
    response_tokens = res.sampling.max_new_tokens * TYPICAL_FILL
    critique_tokens = cri.critique_sampling.max_new_tokens * TYPICAL_FILL
    revision_tokens = cri.revision_sampling.max_new_tokens * TYPICAL_FILL
    responses, critiqued, comparisons = item_counts(stage)
    contrast = contrast_counts(stage, cfg)
    training = stage.training
    # DPO reads prompt+chosen and prompt+rejected; training_tokens_per_s counts those tokens per second of a
    # step that includes the backward pass and the reference model's forward pass (benchmarks/gpu_throughput.py)
    example_tokens = instruction_tokens + response_tokens
    # prompts that must be read (prefill); shared few-shot prefixes are cached by vLLM and counted once per share
    return {
        "generate_instructions": {
            "generated": ins.candidates * instruction_tokens,
            "scored": ins.candidates * ins.fewshot_k * instruction_tokens / max(1, ins.fewshot_share),
        },
        "generate_responses": {
            "generated": responses * response_tokens,
            "scored": responses * (res.fewshot_k * EXAMPLE_TOKENS / max(1, res.fewshot_share) + instruction_tokens),
        },
        "critique_revise": {
            "generated": critiqued * (critique_tokens + revision_tokens),
            "scored": critiqued * 2 * (cri.fewshot_k * DEMO_TOKENS / max(1, cri.fewshot_share) + response_tokens),
        },
        "safety_label": {"scored": (responses + critiqued) * (GUARD_PROMPT_TOKENS + response_tokens)},
        "preference_label": {
            "scored": comparisons
            * pref.principles_per_comparison
            * 2
            * (PREFERENCE_PROMPT_TOKENS + 2 * response_tokens)
        },
        "generate_contrast": contrast_tokens(stage, contrast),
        "train_dpo": {
            "trained": stage_pairs(stage, comparisons) * training.num_train_epochs * 2 * example_tokens,
            "sft_trained": sft_examples(stage, contrast) * training.sft_warmup.num_train_epochs * example_tokens,
        },
        "eval_generate": {
            "generated": len(load_eval_prompts(eval_set_paths(cfg["evaluation"]), cfg["evaluation"]["max_prompts"]))
            * cfg["evaluation"]["sampling"]["max_new_tokens"]
            * TYPICAL_FILL
        },
    }


def contrast_counts(stage: StagePlan, cfg: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(seed, generated) requests generate_contrast writes per construction principle at most
    (``contrast.contrast_requests`` counts them from the constitution's seed files, as the job does); none
    when the stage makes no contrast table."""
    from maximalcai.constitution import Labellings, load_constitution
    from maximalcai.contrast import contrast_requests

    if not stage.contrast.enabled:
        return {}
    return contrast_requests(Labellings.of(load_constitution(cfg["constitution"])), stage.contrast)


def contrast_tokens(stage: StagePlan, counts: dict[str, tuple[int, int]]) -> dict[str, float]:
    """generate_contrast's tokens: the requests it writes (``counts``: ``contrast_counts``), and each request's
    framed and on-policy answers."""
    settings = stage.contrast
    if not counts:
        return {}
    requests = sum(seeds + generated for seeds, generated in counts.values())
    answers = requests * (2 * settings.per_framing + settings.on_policy)
    written = sum(2 * generated for _, generated in counts.values())  # twice as many candidates as kept
    answer_tokens = settings.sampling.max_new_tokens * TYPICAL_FILL
    return {
        "generated": answers * answer_tokens + written * settings.request_sampling.max_new_tokens * TYPICAL_FILL,
        "scored": answers * (settings.fewshot_k * EXAMPLE_TOKENS / max(1, settings.fewshot_share) + 30),
    }


def stage_pairs(stage: StagePlan, comparisons: float) -> float:
    """Training pairs a stage is expected to keep."""
    ins = stage.instructions
    pairs = comparisons * 0.5  # about half survive the filters (measured: 30-40%)
    checks = stage.pairs.verifiable
    if checks.enabled:  # best vs worst of n where the checks separate them; code-revised answers vs originals
        pairs += ins.count * 0.5 * checks.best_worst + ins.count * ins.constraints.share * 0.5 * checks.code_revisions
    return pairs * (1 - stage.pairs.heldout_fraction)


# Which budget.throughput rate turns each kind of token count into GPU time.
RATE_KEYS = {
    "generated": "generation_tokens_per_s",
    "scored": "scoring_tokens_per_s",
    "trained": "training_tokens_per_s",
    "sft_trained": "sft_tokens_per_s",
}


def token_hours(kind: str, tokens: float, throughput: dict[str, float]) -> float:
    """GPU hours for ``tokens`` of one kind (a key of ``RATE_KEYS``) at the configured throughput."""
    return tokens / throughput[RATE_KEYS[kind]] / 3600


def rule_hours(stage: StagePlan, cfg: dict[str, Any]) -> dict[str, float]:
    """GPU hours of each rule of one stage (all its jobs together), from ``budget.throughput``; model loads and
    start-up are not included (``overhead_hours_per_stage``)."""
    throughput = cfg["budget"]["throughput"]
    return {
        rule: sum(token_hours(kind, tokens, throughput) for kind, tokens in counts.items())
        for rule, counts in rule_tokens(stage, cfg).items()
    }


def stage_estimate(stage: StagePlan, cfg: dict[str, Any]) -> dict[str, float]:
    """Token counts and GPU hours of one stage."""
    throughput = cfg["budget"]["throughput"]
    tokens = rule_tokens(stage, cfg)
    evaluation = tokens.pop("eval_generate")["generated"]
    evaluation *= 1 + 2 / len(cfg["stages"])  # the stage's model, and its share of base and base_fewshot
    generated = sum(t.get("generated", 0.0) for t in tokens.values()) + evaluation
    scored = sum(t.get("scored", 0.0) for t in tokens.values())
    trained, sft_trained = tokens["train_dpo"]["trained"], tokens["train_dpo"]["sft_trained"]
    hours = {
        "generation_h": token_hours("generated", generated, throughput),
        "scoring_h": token_hours("scored", scored, throughput),
        "training_h": token_hours("trained", trained, throughput)
        + token_hours("sft_trained", sft_trained, throughput),
        "overhead_h": throughput["overhead_hours_per_stage"],
    }
    comparisons = item_counts(stage)[2]
    return {
        "generated_tokens": round(generated),
        "scored_tokens": round(scored),
        "training_tokens": round(trained + sft_trained),
        "pairs": round(stage_pairs(stage, comparisons)),
        **{k: round(v, 2) for k, v in hours.items()},
        "gpu_hours": round(sum(hours.values()), 2),
    }


def build_plan(cfg: dict[str, Any]) -> dict[str, Any]:
    budget = cfg["budget"]
    stages = []
    for stage_id, stage in zip(stage_ids(cfg), cfg["stages"]):
        estimate = stage_estimate(StagePlan.of(stage), cfg)
        stages.append(
            {
                "stage": stage_id,
                "name": stage["name"],
                **estimate,
                "usd": round(estimate["gpu_hours"] * budget["usd_per_gpu_hour"], 2),
            }
        )
    total_hours = round(sum(s["gpu_hours"] for s in stages), 2)
    return {
        "gpu": budget["gpu_name"],
        "usd_per_gpu_hour": budget["usd_per_gpu_hour"],
        "stages": stages,
        "total_gpu_hours": total_hours,
        "total_usd": round(total_hours * budget["usd_per_gpu_hour"], 2),
        "max_usd": budget["max_usd"],
        "throughput": budget["throughput"],
    }


def format_plan(plan: dict[str, Any]) -> str:
    lines = [
        f"Budget plan on {plan['gpu']} at ${plan['usd_per_gpu_hour']}/GPU-hour",
        "",
        "| stage | theme | generated tokens | scored tokens | training tokens | pairs | GPU h | $ |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in plan["stages"]:
        lines.append(
            f"| {s['stage']} | {s['name']} | {s['generated_tokens']:,} | {s['scored_tokens']:,} | "
            f"{s['training_tokens']:,} | {s['pairs']:,} | {s['gpu_hours']:.1f} | {s['usd']:.0f} |"
        )
    lines += [
        f"| **total** | | | | | | **{plan['total_gpu_hours']:.1f}** | **{plan['total_usd']:.0f}** |",
        "",
        f"Budget guard: max ${plan['max_usd']:.0f} ({'within' if plan['total_usd'] <= plan['max_usd'] else 'OVER'} "
        f"budget). "
        f"Throughput assumed: {json.dumps(plan['throughput'])}.",
    ]
    return "\n".join(lines)


MAX_JOBS_PER_STAGE = 5_000  # Snakemake builds its DAG in minutes beyond this (1M candidates: still building at 2 min)


def check_size(cfg: dict[str, Any], sources: str = "config.yaml") -> None:
    """Refuse, before Snakemake builds its DAG, a stage whose counts make more jobs than it can plan: each
    shard is a job, so the count is the sharded rules' shards (generation.shard_count)."""
    from maximalcai.generation import SHARDED_RULES, Instructions, Responses, instruction_shards, response_shards

    for index, stage in enumerate(cfg["stages"]):
        ins, res = Instructions.from_section(stage["instructions"]), Responses.from_section(stage["responses"])
        jobs = instruction_shards(ins) + response_shards(ins, res) * len(SHARDED_RULES)
        if jobs > MAX_JOBS_PER_STAGE:
            key = f"stages[{index}]"
            raise ConfigError(
                f"{sources}: {key} would run {jobs:,} jobs ({instruction_shards(ins):,} shards of "
                f"instructions.candidates={ins.candidates:,} at instructions.shard_size={ins.shard_size}, "
                f"{response_shards(ins, res):,} of instructions.count={ins.count:,} at "
                f"responses.shard_size={res.shard_size} for each of {len(SHARDED_RULES)} rules), more than "
                f"the {MAX_JOBS_PER_STAGE:,} Snakemake plans in reasonable time; raise {key}.instructions.shard_size "
                f"and {key}.responses.shard_size (each shard is one job), or lower the counts"
            )


def check_budget(cfg: dict[str, Any]) -> dict[str, Any]:
    """Refuse a GPU run whose estimate exceeds budget.max_usd unless budget.allow_over_budget is set."""
    plan = build_plan(cfg)
    if plan["total_usd"] > cfg["budget"]["max_usd"] and not cfg["budget"]["allow_over_budget"]:
        raise ConfigError(
            f"the estimated cost of this GPU run, ${plan['total_usd']:.0f} ({plan['total_gpu_hours']:.1f} GPU hours "
            f"on {plan['gpu']}), exceeds budget.max_usd=${cfg['budget']['max_usd']:.0f}. See `snakemake plan`; lower "
            "the counts, raise budget.max_usd, or override with --config budget='{allow_over_budget: true}'"
        )
    return plan


def run_plan(config: dict[str, Any], markdown: str, json_path: str) -> None:
    """Rule plan: the estimated GPU hours and dollars per stage of ``config`` (all of it: the plan estimates
    every job), in ``markdown`` and ``json_path``, and on the terminal (stdout, not the rule's log)."""
    plan = build_plan(config)
    text = format_plan(plan)
    write_text_atomic(markdown, text + "\n")
    write_text_atomic(json_path, json.dumps(plan, indent=2) + "\n")
    logger.info("plan written to %s:\n%s", markdown, text)
    print(text, file=sys.__stdout__, flush=True)
