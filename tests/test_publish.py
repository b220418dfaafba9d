"""Publishing a stage: the pairs as a DatasetDict with train and test splits that round-trip through
save_to_disk and that TRL's DPO trainer loads; the cards; the upload calls, made against a stand-in Hub."""

import json
import shutil

import pytest
from test_training import pair

from conftest import REPO
from maximalcai import cli, tables


@pytest.fixture()
def stage_dir(tmp_path, tiny_model_dir, monkeypatch):
    """A workflow folder with stage 1's pairs (8 train, 2 held out) and an adapter with its card."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    stage = tmp_path / "results/stage1"
    stage.mkdir(parents=True)
    tables.write_table(
        [pair(i) for i in range(8)] + [pair(8, "heldout"), pair(9, "heldout")], stage / "pairs.parquet", "pairs"
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(stage / "adapter")
    (stage / "adapter/README.md").write_text("---\nlibrary_name: peft\n---\n# adapter card\n")
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_local_push_writes_a_dataset_dict_that_round_trips_and_trl_loads(stage_dir, tiny_model_dir, capsys):
    from datasets import load_from_disk
    from huggingface_hub import DatasetCard
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    assert cli.main(["push", "--stage", "stage1", "--local", "shared"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["splits"] == {"train": 8, "test": 2}
    data = load_from_disk(str(stage_dir / "shared/dataset"))
    assert {name: len(split) for name, split in data.items()} == {"train": 8, "test": 2}
    assert data["train"][0]["chosen"] == "A helpful answer number 0." and data["test"][0]["pair_id"] == "p8"
    card = DatasetCard.load(stage_dir / "shared/dataset/README.md")
    assert "dpo" in card.data.tags and '"train": 8' in card.text and "constitution sha256" in card.text
    assert (stage_dir / "shared/model/adapter_config.json").is_file()

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)  # TRL's own DPO data loading on the splits
    trainer = DPOTrainer(
        model=model,
        args=DPOConfig(output_dir=str(stage_dir / "dpo"), use_cpu=True, bf16=False, max_length=64, report_to="none"),
        train_dataset=data["train"],
        eval_dataset=data["test"],
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
    )
    assert len(trainer.train_dataset) == 8 and len(trainer.eval_dataset) == 2
    assert {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(trainer.train_dataset.column_names)  # tokenized by TRL


def test_push_uploads_dataset_and_model_with_the_token_from_the_environment(stage_dir, monkeypatch, capsys):
    calls = []

    class Hub:
        def __init__(self, token):
            calls.append(("token", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs.get("repo_type"), kwargs["private"]))

        def upload_folder(self, folder_path, repo_id, **kwargs):
            calls.append(("upload_folder", folder_path, repo_id))

    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setattr(huggingface_hub, "HfApi", Hub)
    monkeypatch.setattr(
        datasets.DatasetDict,
        "push_to_hub",
        lambda self, repo, **kw: calls.append(("push_to_hub", repo, sorted(self), kw["private"])),
    )
    monkeypatch.setattr(
        huggingface_hub.DatasetCard, "push_to_hub", lambda self, repo, **kw: calls.append(("card", repo))
    )
    assert cli.main(["push", "--stage", "stage1", "--dataset-repo", "me/pairs", "--model-repo", "me/model"]) == 0
    assert calls == [
        ("token", "hf_test"),
        ("create_repo", "me/pairs", "dataset", True),
        ("push_to_hub", "me/pairs", ["test", "train"], True),
        ("card", "me/pairs"),
        ("create_repo", "me/model", None, True),
        ("upload_folder", "results/stage1/adapter", "me/model"),
    ]
    assert json.loads(capsys.readouterr().out)["model"] == "https://huggingface.co/me/model"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["push", "--stage", "stage1", "--dataset-repo", "me/pairs"], "no Hugging Face token"),
        (["push", "--stage", "stage1"], "--dataset-repo USER/NAME"),
        (["push", "--stage", "stage1", "--what", "merged", "--local", "x"], "snakemake --cores 1 stage1_export"),
        (["push", "--stage", "stage7", "--local", "x"], "not a stage of this config"),
    ],
)
def test_push_mistakes_name_the_fix(stage_dir, monkeypatch, capsys, argv, message):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(stage_dir / "hf"))  # no stored login either
    assert cli.main(argv) == 2 and message in capsys.readouterr().err


def test_push_without_pairs_names_the_target(stage_dir, capsys):
    shutil.rmtree(stage_dir / "results/stage1")
    assert cli.main(["push", "--stage", "stage1", "--local", "x"]) == 2
    assert "snakemake --cores 1 stage1_pairs" in capsys.readouterr().err
