"""DPO on LoRA with the tiny random model: outputs, resume after a kill, the stage-N reference, SFT warm-up."""

import copy
import dataclasses
import json
import logging
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from maximalcai import patches, tables
from maximalcai.errors import ConfigError, HardwareError
from maximalcai.hardware import Hardware, check_hardware
from maximalcai.tiny import build_tiny_model, pair_row, quick_training
from maximalcai.training.checkpoints import prepare_checkpoints
from maximalcai.training.dpo import load_policy, run_phase, train_stage, trainer_args, training_code_versions
from maximalcai.training.settings import SftWarmup, Trainer


def pair(i, split="train"):
    prompt = f"### Instruction:\nQuestion {i}?\n\n### Response:\n"
    return pair_row(i, prompt, f"A helpful answer number {i}.", f"no {i} no no", split)


@pytest.fixture()
def pairs_path(tmp_path):
    path = tmp_path / "pairs.parquet"
    tables.write_table([pair(i) for i in range(8)] + [pair(8, "heldout")], path, "pairs")
    return str(path)


@pytest.fixture()
def train_cfg(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["hardware"].update(device="cpu", dtype="float32")
    cfg["trainer"].update(backend="trl", save_steps=2, cpu_dtype="float32")  # the same numbers on every CPU
    return cfg, quick_training(cfg["stages"][0]["training"])  # DPO alone unless a test turns the warm-up on


def train(cfg, settings, model_dir, pairs_path, out, checkpoints, stage="stage1", previous=None, **kwargs):
    """``train_stage`` on the tests' tiny model and pairs."""
    return train_stage(
        Hardware.from_section(cfg["hardware"]),
        Trainer.from_section(cfg["trainer"]),
        settings,
        stage,
        str(model_dir),
        pairs_path,
        previous,
        out,
        checkpoints,
        seed=cfg["seed"],
        **kwargs,
    )


def adapter_tensors(folder):
    return load_file(str(folder / "adapter_model.safetensors"))


def test_training_writes_adapter_log_and_model_card(tmp_path, tiny_model_dir, pairs_path, train_cfg, caplog):
    cfg, settings = train_cfg
    with caplog.at_level("INFO", logger="maximalcai.progress"):
        rows, summary = train(
            cfg, settings, tiny_model_dir, pairs_path, str(tmp_path / "adapter"), str(tmp_path / "ckpt")
        )
    assert any(r.getMessage().startswith("dpo training: 4/4 steps (100%)") for r in caplog.records)
    adapter = tmp_path / "adapter"
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= {p.name for p in adapter.iterdir()}
    assert not (adapter / "ref").exists()
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == settings.lora.r
    card = (adapter / "README.md").read_text()
    assert "tiny-gemma3" in card and '"beta": 0.1' in card and "manifests/training.json" in card
    assert summary["train_pairs"] == 8 and summary["steps"] == 4 and summary["reference"].startswith("base")
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(r["phase"] == "dpo" for r in rows)
    assert all(r["rewards_margins"] is not None and r["loss"] is not None for r in rows)
    tables.to_arrow(rows, "training_log")


class KillAfter(TrainerCallback):
    """A job killed after ``steps`` optimizer steps (a pod restart, say)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.steps:
            raise KeyboardInterrupt(f"killed after step {state.global_step}")


def test_a_killed_run_resumes_to_the_same_adapter(tmp_path, tiny_model_dir, pairs_path, train_cfg, caplog):
    cfg, settings = train_cfg
    train(cfg, settings, tiny_model_dir, pairs_path, str(tmp_path / "a"), str(tmp_path / "ca"))
    with pytest.raises(KeyboardInterrupt):
        train(
            cfg,
            settings,
            tiny_model_dir,
            pairs_path,
            str(tmp_path / "b"),
            str(tmp_path / "cb"),
            dpo_callbacks=[KillAfter(3)],
        )
    assert (tmp_path / "cb/dpo/checkpoint-2").is_dir() and not (tmp_path / "b").exists()
    # A save the kill cut short (issue 29): checkpoint-3 without its trainer state, and with a truncated one.
    shutil.copytree(tmp_path / "cb/dpo/checkpoint-2", tmp_path / "cb/dpo/checkpoint-3")
    (tmp_path / "cb/dpo/checkpoint-3/trainer_state.json").write_text('{"global_step": 3, "log_hist')
    with caplog.at_level(logging.INFO, logger="maximalcai.training.dpo"):
        rows, summary = train(cfg, settings, tiny_model_dir, pairs_path, str(tmp_path / "b"), str(tmp_path / "cb"))
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # the history of the resumed run covers every step
    assert "checkpoint-3 was cut short while it was saved" in caplog.text
    assert "dpo phase resumes from" in caplog.text and "checkpoint-2 (step 2" in caplog.text
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 4  # its rate counts steps 3 and 4 only
    assert not (tmp_path / "cb").exists()  # done: a forced rerun (--forcerun train_dpo) trains from the start
    a, b = adapter_tensors(tmp_path / "a"), adapter_tensors(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_the_checkpoint_fingerprint_names_the_training_code():
    versions = training_code_versions()
    assert {"torch", "transformers", "trl", "peft", "training_module_sha256"} <= set(versions)


def test_checkpoints_for_other_inputs_are_discarded(tmp_path):
    folder = tmp_path / "ckpt"
    (folder / "checkpoint-4").mkdir(parents=True)
    (folder / "fingerprint.json").write_text(json.dumps({"pairs_sha256": "old"}))
    prepare_checkpoints(folder, {"pairs_sha256": "new"})
    assert not (folder / "checkpoint-4").exists()
    (folder / "dpo/checkpoint-2").mkdir(parents=True)
    prepare_checkpoints(folder, {"pairs_sha256": "new"})  # the same inputs: the phase's checkpoint stays
    assert (folder / "dpo/checkpoint-2").is_dir()
    (folder / "fingerprint.json").write_text('{"pairs_sha2')  # a kill while the stamp was written
    prepare_checkpoints(folder, {"pairs_sha256": "new"})  # starts over instead of failing on the half-written stamp
    assert not (folder / "dpo").exists() and json.loads((folder / "fingerprint.json").read_text())


def completion_logps(model, batch):
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["input_ids"][:, 1:]
    mask = batch["completion_mask"][:, 1:].bool()
    logps = torch.log_softmax(logits, -1).gather(-1, labels[..., None]).squeeze(-1)
    return (logps * mask).sum(-1)


def test_stage2_reference_is_the_frozen_stage1_model(tmp_path, tiny_model_dir, pairs_path, train_cfg):
    from datasets import Dataset
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer
    from trl.trainer.utils import use_adapter

    cfg, settings = train_cfg
    stage1 = tmp_path / "stage1"
    train(cfg, settings, tiny_model_dir, pairs_path, str(stage1), str(tmp_path / "c1"))

    model, tokenizer, peft_config = load_policy(
        str(tiny_model_dir), str(stage1), settings, Trainer.from_section(cfg["trainer"]), "cpu", "trl", cfg["seed"]
    )
    assert peft_config is None  # stage 2 continues stage 1's adapter
    rows = [{k: pair(i)[k] for k in ("prompt", "chosen", "rejected")} for i in range(4)]
    args = DPOConfig(
        output_dir=str(tmp_path / "t"),
        per_device_train_batch_size=2,
        max_steps=2,
        learning_rate=1e-2,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        max_length=64,
        seed=42,
    )
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    assert set(trainer.model.peft_config) == {"default", "ref"}
    trainer.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    policy = trainer.model
    with use_adapter(policy, adapter_name="ref"):
        reference = completion_logps(policy, batch)
    trained = completion_logps(policy, batch)

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    base_logps = completion_logps(base, batch)
    stage1_model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32), stage1
    )
    stage1_logps = completion_logps(stage1_model.merge_and_unload(), batch)

    torch.testing.assert_close(reference, stage1_logps, rtol=0, atol=1e-3)
    assert not torch.allclose(reference, base_logps, atol=1e-3)  # the adapter-disabled model would be wrong
    assert not torch.allclose(trained, reference, atol=1e-3)  # training moved the policy away from its reference


def test_stage2_training_saves_only_the_trained_adapter(tmp_path, tiny_model_dir, pairs_path, train_cfg):
    cfg, settings = train_cfg
    train(cfg, settings, tiny_model_dir, pairs_path, str(tmp_path / "s1"), str(tmp_path / "c1"))
    _, summary = train(
        cfg,
        settings,
        tiny_model_dir,
        pairs_path,
        str(tmp_path / "s2"),
        str(tmp_path / "c2"),
        stage="stage2",
        previous=str(tmp_path / "s1"),
    )
    assert summary["reference"].startswith("previous stage")
    assert not (tmp_path / "s2" / "ref").exists()
    assert adapter_tensors(tmp_path / "s2").keys() == adapter_tensors(tmp_path / "s1").keys()


def test_sft_warmup_runs_before_dpo_and_tensorboard_records_both(tmp_path, tiny_model_dir, pairs_path, train_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, settings = train_cfg
    cfg["trainer"]["report_to"] = ["tensorboard"]
    settings = dataclasses.replace(settings, sft_warmup=SftWarmup(True, 1, 1e-3, {}))
    examples = [
        {
            "example_id": f"i{i}-r0",
            "instruction_id": f"i{i}",
            "source": "response",
            "prompt": f"### Instruction:\nQ{i}?\n\n### Response:\n",
            "completion": f"Better answer {i}.",
            "principle_id": "helpfulness",
            "mechanism": "checks",
        }
        for i in range(3)
    ]
    tables.write_table(examples, tmp_path / "sft.parquet", "sft_examples")
    rows, summary = train(
        cfg,
        settings,
        tiny_model_dir,
        pairs_path,
        str(tmp_path / "a"),
        str(tmp_path / "c"),
        sft_path=str(tmp_path / "sft.parquet"),
        runs_dir=str(tmp_path / "runs"),
    )
    assert summary["sft_examples"] == 3 and summary["sft_seconds"] > 0
    phases = [r["phase"] for r in rows]
    assert phases[0] == "sft" and phases[-1] == "dpo" and phases.index("dpo") == phases.count("sft")
    assert summary["reference"].startswith("previous stage")  # DPO's reference is the warmed-up adapter
    for phase in ("sft", "dpo"):  # the event files hold the same losses as the training log
        events = EventAccumulator(str(tmp_path / "runs" / phase)).Reload()
        losses = [e.value for e in events.Scalars("train/loss")]
        assert losses == pytest.approx([r["loss"] for r in rows if r["phase"] == phase], rel=1e-5)
    assert "train/rewards/margins" in EventAccumulator(str(tmp_path / "runs/dpo")).Reload().Tags()["scalars"]


def test_trl_args_pass_through_and_unknown_keys_name_the_fix(tmp_path, train_cfg):
    from trl import DPOConfig

    cfg, settings = train_cfg
    trainer = Trainer.from_section(cfg["trainer"])
    args = trainer_args(DPOConfig, settings, trainer, cfg["seed"], tmp_path, "cpu", trl_args={"ld_alpha": 0.5})
    assert args.ld_alpha == 0.5  # any DPOConfig field passes through
    args = trainer_args(DPOConfig, settings, trainer, cfg["seed"], tmp_path, "cpu", trl_args={"learning_rate": 3e-4})
    assert args.learning_rate == 3e-4  # and wins over the settings
    with pytest.raises(ConfigError, match=r"training.trl_args: ld_alfa \(did you mean 'ld_alpha'\?\) is not a field"):
        trainer_args(DPOConfig, settings, trainer, cfg["seed"], tmp_path, "cpu", trl_args={"ld_alfa": 0.5})


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("trainer", "backend", "unsloth", "trainer.backend asks for unsloth"),
        ("trainer", "load_in_4bit", True, "trainer.load_in_4bit asks for 4-bit QLoRA"),
        ("generation", "backend", "vllm", "generation.backend asks for vLLM generation"),
        ("hardware", "device", "cuda", "hardware.device asks for CUDA"),
    ],
)
def test_gpu_only_options_fail_clearly_without_cuda(default_config, section, key, value, message):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = copy.deepcopy(default_config)
    cfg[section][key] = value
    with pytest.raises(HardwareError, match=message):
        check_hardware(cfg)


def test_cpu_training_runs_in_float32(tmp_path, train_cfg):
    from trl import DPOConfig

    cfg, settings = train_cfg
    args = trainer_args(
        DPOConfig, settings, Trainer.from_section(cfg["trainer"]), cfg["seed"], tmp_path, "cpu", beta=0.1
    )
    assert args.bf16 is False and args.use_cpu is True  # TRL's own default would be bf16 autocast
    assert args.warmup_steps == settings.warmup_steps and args.seed == cfg["seed"]
    # the stage's settings reach TRL under its own names, unchanged
    assert all(getattr(args, name) == value for name, value in settings.trl_fields().items())
    # trainer.gradient_checkpointing: false reaches TRL, whose own default is True (it recomputed every
    # layer's forward in the backward pass: a fifth of the default run's training time for no memory need)
    assert cfg["trainer"]["gradient_checkpointing"] is False and args.gradient_checkpointing is False
    cfg = {**cfg, "trainer": {**cfg["trainer"], "gradient_checkpointing": True}}
    assert (
        trainer_args(
            DPOConfig, settings, Trainer.from_section(cfg["trainer"]), cfg["seed"], tmp_path, "cpu"
        ).gradient_checkpointing
        is True
    )


def test_cpu_bfloat16_weights_train_close_to_float32(tmp_path, tiny_model_dir, pairs_path, train_cfg):
    """trainer.cpu_dtype: bfloat16 (what auto picks on a CPU with native bf16) holds the frozen base in bf16 but
    the LoRA weights in float32, and trains close to the float32 run: not bit for bit, so the bound is stated."""
    cfg, settings = train_cfg
    runs = {}
    for dtype in ("float32", "bfloat16"):
        run_cfg = copy.deepcopy(cfg)
        run_cfg["trainer"]["cpu_dtype"] = dtype
        rows, summary = train(
            run_cfg, settings, tiny_model_dir, pairs_path, str(tmp_path / dtype), str(tmp_path / f"ckpt-{dtype}")
        )
        runs[dtype] = rows, summary, adapter_tensors(tmp_path / dtype)
    (fp_rows, fp_summary, fp_adapter), (bf_rows, bf_summary, bf_adapter) = runs["float32"], runs["bfloat16"]
    assert (fp_summary["weights_dtype"], bf_summary["weights_dtype"]) == ("float32", "bfloat16")
    assert {t.dtype for t in bf_adapter.values()} == {torch.float32}
    assert len(fp_rows) == len(bf_rows) >= 2
    # measured: losses 0.007 apart at most, margins 2% (0.559 vs 0.579 after one step, 1.250 vs 1.253 after three)
    for fp, bf in zip(fp_rows, bf_rows):
        assert abs(fp["loss"] - bf["loss"]) < 0.03, (fp, bf)
        assert abs(fp["rewards_margins"] - bf["rewards_margins"]) <= 0.1 * abs(fp["rewards_margins"]) + 1e-6, (fp, bf)
    assert fp_rows != bf_rows  # the setting took effect: bf16 rounding shows in the numbers
    # the first step sees policy == reference in both dtypes: a loss of log 2 exactly
    assert fp_rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert bf_rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    # the adapters moved the same way: each LoRA matrix's update points in nearly the same direction (measured: the
    # least aligned at 0.980 on a 2-core Intel Xeon, above 0.99 on an AMD EPYC, whose bf16 kernels round
    # differently; unrelated updates would be near 0)
    for name, tensor in fp_adapter.items():
        cos = torch.nn.functional.cosine_similarity(tensor.flatten(), bf_adapter[name].flatten(), dim=0)
        assert cos > 0.95, (name, float(cos))


def test_qlora_load_path_runs_on_the_cpu_through_bitsandbytes(tmp_path, gemma_style_tokenizer, pairs_path, train_cfg):
    """trainer.load_in_4bit's own code (bitsandbytes NF4, prepare_model_for_kbit_training, LoRA) and a DPO phase,
    run on bitsandbytes' CPU backend: the GPU QLoRA path, exercised without a GPU. The workflow itself still
    asks for CUDA for it (a 4-bit CPU run is slower than float32 and loses accuracy: docs/RUNPOD.md)."""
    pytest.importorskip("bitsandbytes")
    from bitsandbytes.nn import Linear4bit
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    # bitsandbytes' CPU kernels pack weights in blocks of 64: every projection 64 wide at least
    tiny_model_dir = tmp_path / "model"
    sizes = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=4, head_dim=16)
    build_tiny_model(gemma_style_tokenizer, **sizes).save_pretrained(tiny_model_dir)
    gemma_style_tokenizer.save_pretrained(tiny_model_dir)
    cfg, settings = train_cfg
    cfg = copy.deepcopy(cfg)
    cfg["trainer"]["load_in_4bit"] = True
    model, tokenizer, peft_config = load_policy(
        str(tiny_model_dir), None, settings, Trainer.from_section(cfg["trainer"]), "cpu", "trl", cfg["seed"]
    )
    assert sum(isinstance(m, Linear4bit) for m in model.modules()) >= 7  # every projection of a block, at least
    dense = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    batch = tokenizer(["### Instruction:\nQuestion 1?\n\n### Response:\n"], return_tensors="pt")
    with torch.no_grad():
        exact = dense(**batch).logits.float().log_softmax(-1)
        nf4 = model(**batch).logits.float().log_softmax(-1)
    kl = float((exact.exp() * (exact - nf4)).sum(-1).mean())
    assert 0 < kl < 0.05, kl  # NF4 rounding shows, but the distribution is the model's

    patches.trl_scoring.score_only_completions_on_cpu()
    rows = [r for r in tables.read_table(pairs_path, "pairs") if r["split"] == "train"]
    dataset = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    trainer = Trainer.from_section(cfg["trainer"])
    _, log = run_phase(
        DPOTrainer, DPOConfig, model, tokenizer, peft_config, dataset, settings, trainer, cfg["seed"],
        tmp_path / "ckpt", "cpu", "dpo", beta=0.1, loss_type=["sigmoid"], loss_weights=None,
    )  # fmt: skip
    assert len(log) == 4 and log[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)
    assert log[-1]["loss"] < log[0]["loss"] and log[-1]["rewards_margins"] > 0  # the 4-bit model learned
