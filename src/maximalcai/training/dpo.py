"""One stage of DPO on a LoRA adapter, resumable, with a per-step log and a model card.

- Stage 1 trains a fresh adapter on the base model; its DPO reference is the base with the adapter
  disabled (no second model in memory).
- Stage N+1 continues stage N's adapter. Disabling the adapter would make the *base* the reference, which
  is wrong here: the reference must be stage N's model. The trainer is given the PEFT model with stage N's
  adapter loaded as trainable, and TRL keeps a frozen copy of it as a second adapter named ``ref`` that
  computes the reference log-probabilities (tests/test_training.py checks they equal stage N's).
- An optional SFT warm-up (SL-CAI) first fine-tunes the adapter on the final revisions labelled safe;
  DPO then uses the warmed-up adapter as its reference.
- Checkpoints go to ``results/<stage>/checkpoints/`` (not a declared output, so Snakemake never deletes it
  when a job is killed). A rerun resumes from the last complete checkpoint if its fingerprint (pairs,
  settings, base model, previous adapter, library versions and this module's source) matches, and starts
  over otherwise. Once the adapter is saved the checkpoints are removed, so a forced rerun trains again.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from maximalcai import patches, tables
from maximalcai.cards import adapter_card
from maximalcai.config import did_you_mean
from maximalcai.errors import ConfigError, TableError
from maximalcai.hardware import Hardware
from maximalcai.manifest import Timer
from maximalcai.models import read_model_info
from maximalcai.progress import trainer_callback
from maximalcai.reproducibility import dir_sha256, file_sha256, seed_everything
from maximalcai.training.checkpoints import checkpoint_step, last_checkpoint, prepare_checkpoints
from maximalcai.training.settings import Lora, Trainer, Training

logger = logging.getLogger(__name__)

LOG_KEYS = {
    "loss": "loss",
    "rewards/chosen": "rewards_chosen",
    "rewards/rejected": "rewards_rejected",
    "rewards/margins": "rewards_margins",
    "rewards/accuracies": "rewards_accuracies",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
}


def ensure_pad_token(tokenizer) -> None:
    """TRL needs a pad token, and pad == eos would mask the real EOS (TRL issues 1152, 3091): prefer an
    existing dedicated pad-like special token when the tokenizer has none or reuses EOS."""
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    for token in ("<pad>", "<|pad|>", "<|fim_pad|>", "<|finetune_right_pad_id|>", "[PAD]"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id not in (None, tokenizer.unk_token_id, tokenizer.eos_token_id):
            tokenizer.pad_token = token
            return
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    logger.warning(
        "pad token %r equals EOS or UNK; TRL pads by length, but check EOS handling for this tokenizer",
        tokenizer.pad_token,
    )


def lora_config(lora: Lora):
    from peft import LoraConfig

    return LoraConfig(**lora.peft_fields(), bias="none", task_type="CAUSAL_LM")


def base_weights_dtype(trainer: Trainer, device: str):
    """The frozen base model's dtype on the trl backend: float32 under TRL's bf16 autocast on CUDA;
    ``trainer.cpu_dtype`` on a CPU, where autocast did not pay (bf16 weights did, on native-bf16 CPUs)."""
    import torch

    from maximalcai.hardware import resolve_dtype

    if device == "cpu":
        return resolve_dtype(trainer.cpu_dtype, "cpu")
    return torch.float32


def load_policy(
    base_dir: str,
    previous_adapter: str | None,
    settings: Training,
    trainer: Trainer,
    device: str,
    backend: str,
    seed: int,
):
    """(model, tokenizer, peft_config-or-None): the model to train and how its adapter is created (``trainer``:
    the config's section of that name; ``device``: the resolved device)."""
    import torch

    from maximalcai.models import load_tokenizer

    if backend == "unsloth":
        from unsloth import FastLanguageModel  # GPU only: imported on this path alone

        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=base_dir,
            max_seq_length=settings.max_length,
            dtype=None,
            load_in_4bit=trainer.load_in_4bit,
        )
        if previous_adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, previous_adapter, is_trainable=True)
        else:
            model = FastLanguageModel.get_peft_model(
                model,
                **settings.lora.peft_fields(),
                bias="none",
                random_state=seed,
                use_gradient_checkpointing="unsloth" if trainer.gradient_checkpointing else False,
            )
        ensure_pad_token(tokenizer)
        return model, tokenizer, None

    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(base_dir, padding_side="right")
    ensure_pad_token(tokenizer)
    kwargs: dict[str, Any] = {"dtype": base_weights_dtype(trainer, device)}
    if trainer.load_in_4bit:  # QLoRA without Unsloth: bitsandbytes, CUDA only (checked at start)
        from transformers import BitsAndBytesConfig

        kwargs = {
            "dtype": torch.bfloat16,
            "quantization_config": BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
            ),
        }
    model = AutoModelForCausalLM.from_pretrained(base_dir, **kwargs)
    if trainer.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, trainer.gradient_checkpointing)
    if previous_adapter:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, previous_adapter, is_trainable=True), tokenizer, None
    return model, tokenizer, lora_config(settings.lora)


def trainer_args(
    config_class,
    settings: Training,
    trainer: Trainer,
    seed: int,
    output_dir: Path,
    device: str,
    trl_args: dict[str, Any] | None = None,
    where: str = "training.trl_args",
    **extra,
):
    """The TRL config of one phase: the stage's settings under TRL's names, then how this project runs it,
    then ``extra`` (the phase's own fields), then the user's ``trl_args`` passthrough (any field of
    ``config_class``, e.g. ``precompute_ref_log_probs`` or ``ld_alpha``), which wins."""
    import dataclasses

    trl_args = dict(trl_args or {})
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(trl_args) - fields)
    if unknown:
        hints = [key + did_you_mean(key, fields) for key in unknown]
        raise ConfigError(
            f"{where}: {', '.join(hints)} is not a field of TRL's {config_class.__name__}; "
            "see https://huggingface.co/docs/trl for the fields of this TRL version"
        )
    args = dict(
        **settings.trl_fields(),
        output_dir=str(output_dir),
        logging_steps=1,
        save_strategy="steps",
        save_steps=trainer.save_steps,
        save_total_limit=2,
        seed=seed,
        data_seed=seed,
        report_to=[r for r in trainer.report_to if r != "tensorboard"] or "none",  # see tracker_callbacks
        use_cpu=device == "cpu",
        bf16=device == "cuda",  # TRL defaults to bf16=True, which on a CPU means bf16 autocast and noisy rewards
        fp16=False,
        dataloader_num_workers=0,
        disable_tqdm=not sys.stderr.isatty(),  # in a rule's log: plain lines (progress.trainer_callback), no bars
        gradient_checkpointing=trainer.gradient_checkpointing,  # TRL's own default is True
    )
    args.update(extra)
    args.update(trl_args)
    return config_class(**args)


def loss_types(setting: str | list[str]) -> list[str]:
    """TRL's loss_type as a list (several are combined, weighted by loss_weights: e.g. [sigmoid, sft] is RPO)."""
    return [setting] if isinstance(setting, str) else list(setting)


def training_code_versions() -> dict[str, str]:
    """What determines the weights besides data and settings: the training libraries' versions and this
    module's source. In the checkpoint fingerprint, so an upgrade never resumes from another version's state."""
    from importlib.metadata import version

    return {
        **{name: version(name) for name in ("torch", "transformers", "trl", "peft")},
        "training_module_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
    }


def log_rows(history: Sequence[dict[str, Any]], phase: str) -> list[dict[str, Any]]:
    rows = []
    for entry in history:
        if "loss" not in entry or "train_runtime" in entry:
            continue
        row = {"phase": phase, "step": int(entry["step"]), "epoch": entry.get("epoch")}
        row.update({column: entry.get(key) for key, column in LOG_KEYS.items()})
        rows.append(
            {
                k: (float(v) if isinstance(v, (int, float)) and k not in ("phase", "step") else v)
                for k, v in row.items()
            }
        )
    return rows


def tracker_callbacks(trainer: Trainer, runs_dir: str | Path | None, phase: str) -> list:
    """TensorBoard, when ``trainer.report_to`` names it: event files in ``runs_dir/phase`` (transformers' own
    callback would write them under the checkpoint folder). The other trackers go through TRL's report_to."""
    if "tensorboard" not in trainer.report_to or runs_dir is None:
        return []
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ConfigError(
            "trainer.report_to: tensorboard needs the tensorboard package; install it with "
            "pip install tensorboard, or remove it from report_to"
        ) from exc
    from transformers.integrations import TensorBoardCallback

    return [TensorBoardCallback(SummaryWriter(log_dir=str(Path(runs_dir) / phase)))]


def run_phase(
    trainer_class,
    config_class,
    model,
    tokenizer,
    peft_config,
    dataset,
    settings,
    trainer,
    seed,
    folder,
    device,
    phase: str,
    runs_dir: str | Path | None = None,
    callbacks: Sequence = (),
    **extra,
):
    """Train one phase (sft or dpo) with resumable checkpoints; returns (trained model, log rows).
    ``callbacks``: more ``TrainerCallback`` objects (a timer in a benchmark, a simulated kill in a test)."""
    args = trainer_args(config_class, settings, trainer, seed, folder, device, **extra)
    kwargs = {"peft_config": peft_config} if peft_config is not None else {}
    loop = trainer_class(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[trainer_callback(f"{phase} training"), *tracker_callbacks(trainer, runs_dir, phase), *callbacks],
        **kwargs,
    )
    resume = last_checkpoint(folder)
    if resume:
        logger.info("%s phase resumes from %s (step %d of a killed run)", phase, resume, checkpoint_step(resume))
    loop.train(resume_from_checkpoint=resume)
    return loop.model, log_rows(loop.state.log_history, phase)


def training_policy(
    base_dir: str,
    previous_adapter: str | None,
    settings: Training,
    trainer: Trainer,
    backend: str,
    device: str,
    seed: int,
):
    """``load_policy`` with what the training backend needs around it: on a CPU, TRL scores only the
    completion tokens and its backward casts the frozen head to float32 once; with Unsloth, its DPO trainer
    patch."""
    if device == "cpu":
        patches.trl_scoring.score_only_completions_on_cpu()
        patches.trl_scoring.frozen_head_in_float32_once()
    policy = load_policy(base_dir, previous_adapter, settings, trainer, device, backend, seed)
    if backend == "unsloth":
        from unsloth import PatchDPOTrainer

        PatchDPOTrainer()
    return policy


def train_pairs(pairs_path: str) -> list[dict[str, Any]]:
    """The pairs with split=train; an error naming the table when there are none."""
    pairs = [p for p in tables.read_table(pairs_path, "pairs") if p["split"] == "train"]
    if not pairs:
        raise TableError(f"{pairs_path}: no pairs with split=train; see the pair funnel next to it")
    return pairs


def stage_fingerprint(
    trainer: Trainer,
    device: str,
    settings: Training,
    base_dir: str,
    pairs_path: str,
    previous_adapter: str | None,
    sft_path: str | None,
    backend: str,
    seed: int,
) -> dict[str, Any]:
    """What a stage's checkpoints were trained from: a checkpoint whose fingerprint differs is not resumed."""
    return {
        "pairs_sha256": file_sha256(pairs_path),
        "settings": settings.as_dict(),
        "seed": seed,
        "backend": backend,
        "weights_dtype": str(base_weights_dtype(trainer, device)),
        "sft_sha256": file_sha256(sft_path) if sft_path else None,
        "base_model": read_model_info(base_dir),
        "previous_adapter": dir_sha256(previous_adapter) if previous_adapter else None,
        "code": training_code_versions(),
    }


def sft_phase(
    model, tokenizer, peft_config, sft_path: str, settings, trainer, seed, checkpoints: Path, device, runs_dir
):
    """The SFT warm-up on the stage's examples: (model, peft config for DPO, log rows, examples). DPO then
    continues the warmed-up adapter (peft config None) and TRL keeps its frozen copy as the reference."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    examples = [
        {k: row[k] for k in ("prompt", "completion")}
        for row in tables.read_table(sft_path, "sft_examples", require_rows=False)
    ]
    if not examples:
        logger.warning("SFT warm-up enabled but %s has no examples (see build_pairs' log); skipping it", sft_path)
        return model, peft_config, [], 0
    model, rows = run_phase(
        SFTTrainer,
        SFTConfig,
        model,
        tokenizer,
        peft_config,
        Dataset.from_list(examples),
        settings.for_sft(),
        trainer,
        seed,
        checkpoints / "sft",
        device,
        "sft",
        runs_dir=runs_dir,
        trl_args=settings.sft_warmup.trl_args,
        where="training.sft_warmup.trl_args",
    )
    return model, None, rows, len(examples)


def dpo_phase(
    model, tokenizer, peft_config, pairs, settings, trainer, seed, checkpoints: Path, device, runs_dir, callbacks
):
    """DPO on the stage's train pairs: (model, log rows, the step a killed run's checkpoint resumes at, seconds)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    dataset = Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])
    resumed_step = checkpoint_step(last_checkpoint(checkpoints / "dpo"))  # steps a killed run already made
    with Timer() as timer:
        model, dpo_rows = run_phase(
            DPOTrainer,
            DPOConfig,
            model,
            tokenizer,
            peft_config,
            dataset,
            settings,
            trainer,
            seed,
            checkpoints / "dpo",
            device,
            "dpo",
            runs_dir=runs_dir,
            callbacks=callbacks,
            beta=settings.beta,
            loss_type=loss_types(settings.loss_type),
            loss_weights=None if settings.loss_weights is None else list(settings.loss_weights),
            disable_dropout=True,
            trl_args=settings.trl_args,
        )
    return model, dpo_rows, resumed_step, timer.seconds


def dpo_summary(dpo_rows: Sequence[dict[str, Any]], resumed_step: int, seconds: float) -> dict[str, Any]:
    """The DPO phase's steps, time and speed (steps made in this run, after a resumed checkpoint's)."""
    steps = max((r["step"] for r in dpo_rows), default=0)
    return {
        "steps": steps,
        "resumed_from_step": resumed_step or None,
        "dpo_seconds": round(seconds, 2),
        "steps_per_s": round((steps - resumed_step) / seconds, 4) if seconds else None,
        "final": dpo_rows[-1] if dpo_rows else {},
    }


def save_adapter(model, tokenizer, out_dir: str, card: str) -> None:
    """Write the adapter, its tokenizer and model card to ``out_dir`` atomically (a sibling, then a rename)."""
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, selected_adapters=["default"])
    tokenizer.save_pretrained(tmp)
    (tmp / "README.md").write_text(card)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def train_stage(
    hardware: Hardware,
    trainer: Trainer,
    settings: Training,
    stage: str,
    base_dir: str,
    pairs_path: str,
    previous_adapter: str | None,
    out_dir: str,
    checkpoint_dir: str,
    sft_path: str | None = None,
    runs_dir: str | None = None,
    dpo_callbacks: Sequence = (),
    *,
    seed: int,
    deterministic: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train the stage's adapter; returns (training log rows, summary). Writes ``out_dir`` atomically.
    ``hardware``, ``trainer``: the config's sections of those names; ``runs_dir``: where tracker event files
    go (``trainer.report_to``); ``dpo_callbacks``: more ``TrainerCallback`` objects for the DPO phase."""
    from maximalcai.hardware import resolve_device, resolve_training_backend

    backend = resolve_training_backend(trainer.backend, trainer.load_in_4bit)
    if backend == "unsloth":
        import unsloth  # noqa: F401  before trl and peft, so that its patches apply (it warns otherwise)
    device = resolve_device(hardware.device)
    pairs = train_pairs(pairs_path)
    sft = settings.sft_warmup.enabled
    if sft and not sft_path:
        raise ValueError("training.sft_warmup is enabled but no SFT table was given (results/<stage>/sft.parquet)")
    seed_everything(seed, deterministic)
    checkpoints = Path(checkpoint_dir)
    prepare_checkpoints(
        checkpoints,
        stage_fingerprint(trainer, device, settings, base_dir, pairs_path, previous_adapter, sft_path, backend, seed),
    )
    model, tokenizer, peft_config = training_policy(
        base_dir, previous_adapter, settings, trainer, backend, device, seed
    )
    weights_dtype = str(model.get_input_embeddings().weight.dtype).removeprefix("torch.")  # the frozen base's
    rows: list[dict[str, Any]] = []
    sft_count = 0
    with Timer() as sft_timer:
        if sft:
            model, peft_config, rows, sft_count = sft_phase(
                model, tokenizer, peft_config, sft_path, settings, trainer, seed, checkpoints, device, runs_dir
            )
    model, dpo_rows, resumed_step, seconds = dpo_phase(
        model, tokenizer, peft_config, pairs, settings, trainer, seed, checkpoints, device, runs_dir, dpo_callbacks
    )
    rows += dpo_rows
    summary = {
        "stage": stage,
        "backend": backend,
        "device": device,
        "weights_dtype": weights_dtype,
        "train_pairs": len(pairs),
        "sft_examples": sft_count,
        "sft_seconds": round(sft_timer.seconds, 1),
        **dpo_summary(dpo_rows, resumed_step, seconds),
        "previous_adapter": previous_adapter,
        "reference": "previous stage's adapter (frozen copy)"
        if previous_adapter or sft
        else "base model (adapter disabled)",
    }
    save_adapter(model, tokenizer, out_dir, adapter_card(seed, settings, stage, base_dir, pairs_path, summary))
    # The adapter is the result now; its checkpoints would make a forced rerun (--forcerun train_dpo) resume at
    # the last step and train nothing.
    shutil.rmtree(checkpoints, ignore_errors=True)
    logger.info("adapter saved to %s; checkpoints in %s removed", out_dir, checkpoints)
    return rows, summary


def run_train_dpo(
    hardware: Hardware,
    trainer: Trainer,
    settings: Training,
    seed: int,
    deterministic: bool,
    stage: str,
    base_model: str,
    pairs: str,
    adapter: str,
    log_table: str,
    checkpoints: str,
    runs: str | None = None,
    previous_adapter: str | None = None,
    sft: str | None = None,
) -> dict[str, Any]:
    """Rule train_dpo: one stage's adapter (``adapter``), its training log (``log_table``), resumable from
    ``checkpoints``; tracker event files in ``runs``."""
    rows, summary = train_stage(
        hardware,
        trainer,
        settings,
        stage,
        base_model,
        pairs,
        previous_adapter,
        adapter,
        checkpoints,
        sft,
        runs_dir=runs,
        seed=seed,
        deterministic=deterministic,
    )
    tables.write_table(rows, log_table, "training_log")
    logger.info("trained %s: %s", stage, summary)
    return summary
