"""A stage's ``training`` section, typed, in the names TRL and PEFT give the same settings.

The config's schema (schemas/config.schema.yaml) validates the section and fills its defaults; these classes
are what the training code reads, so a misspelt setting is an AttributeError where it is used rather than a
KeyError deep in a job, and the fields that TRL's ``SFTConfig``/``DPOConfig`` and PEFT's ``LoraConfig`` take
are passed to them by name, unchanged (``trl_fields``, ``peft_fields``). A test checks that these fields and
the schema's keys are the same set, so neither can drift from the other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from maximalcai.typed import Section


@dataclass(frozen=True)
class Trainer(Section):
    """The config's ``trainer`` section, typed: which training backend, and how it runs on this hardware."""

    PATH = ("trainer",)
    STAGE = False

    backend: str
    cpu_dtype: str
    load_in_4bit: bool
    gradient_checkpointing: bool
    save_steps: int
    report_to: tuple[str, ...]


@dataclass(frozen=True)
class Lora:
    """The adapter's shape (PEFT's ``LoraConfig`` fields)."""

    r: int
    lora_alpha: int
    lora_dropout: float
    target_modules: tuple[str, ...] | str

    def peft_fields(self) -> dict[str, Any]:
        """The keyword arguments of PEFT's ``LoraConfig`` (and Unsloth's ``get_peft_model``) these set."""
        modules = self.target_modules
        return {
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "target_modules": modules if isinstance(modules, str) else list(modules),
        }


@dataclass(frozen=True)
class SftWarmup:
    """The SFT phase before DPO (context distillation); ``trl_args``: more ``SFTConfig`` fields."""

    enabled: bool
    num_train_epochs: float
    learning_rate: float
    trl_args: dict[str, Any]


@dataclass(frozen=True)
class Training(Section):
    """One stage's training settings: the DPO phase's, the adapter's and the SFT warm-up's."""

    PATH = ("training",)

    num_train_epochs: float
    max_steps: int
    learning_rate: float
    beta: float
    loss_type: str | tuple[str, ...]
    loss_weights: tuple[float, ...] | None
    trl_args: dict[str, Any]
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    max_length: int
    warmup_steps: float
    lr_scheduler_type: str
    weight_decay: float
    lora: Lora
    sft_warmup: SftWarmup

    # The fields TRL's SFTConfig and DPOConfig both take under these names (the DPO-only ones are passed by
    # the DPO phase).
    TRL_FIELDS = (
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "num_train_epochs",
        "max_steps",
        "learning_rate",
        "lr_scheduler_type",
        "warmup_steps",
        "weight_decay",
        "max_length",
    )

    def trl_fields(self) -> dict[str, Any]:
        """The keyword arguments of TRL's ``SFTConfig``/``DPOConfig`` these set, under TRL's own names."""
        return {name: getattr(self, name) for name in self.TRL_FIELDS}

    def for_sft(self) -> Training:
        """The settings of the SFT phase: the warm-up's epochs and learning rate, every epoch run."""
        warmup = self.sft_warmup
        return dataclasses.replace(
            self, num_train_epochs=warmup.num_train_epochs, learning_rate=warmup.learning_rate, max_steps=-1
        )
