"""Share a stage: its pairs as a ``datasets`` DatasetDict (train and test splits) with a dataset card, and its
model (the adapter, or the merged export) with its card, to the Hugging Face Hub.

    maximalcai push --stage stage1 --dataset-repo you/maximalcai-stage1-pairs --model-repo you/maximalcai-stage1
    maximalcai push --stage stage1 --local shared/                          # everything but the upload

The token comes from the environment (``HF_TOKEN``) or huggingface_hub's login. ``--local DIR`` writes what
would be uploaded (``DIR/dataset`` via ``save_to_disk``, ``DIR/model``) and uploads nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from maximalcai import tables
from maximalcai.errors import MaximalcaiError

# The DPO columns TRL reads, then the provenance columns a user filters on.
COLUMNS = (
    "prompt",
    "chosen",
    "rejected",
    "pair_id",
    "instruction_id",
    "kind",
    "decided_by",
    "principle_ids",
    "soft_label",
    "margin",
    "chosen_safety",
    "rejected_safety",
    "constitution_hash",
)


class PublishError(MaximalcaiError):
    """Nothing to publish, or no credentials."""


def pairs_dataset(pairs_path: str | Path):
    """The stage's pairs as a DatasetDict: ``train`` (split=train, what DPO trained on) and ``test`` (the
    held-out pairs the evaluation scores preference accuracy on)."""
    from datasets import Dataset, DatasetDict

    rows = tables.read_table(pairs_path, "pairs")
    splits = {
        "train": [r for r in rows if r["split"] == "train"],
        "test": [r for r in rows if r["split"] == "heldout"],
    }
    return DatasetDict(
        {name: Dataset.from_list([{c: r[c] for c in COLUMNS} for r in part]) for name, part in splits.items() if part}
    )


def dataset_card(cfg: dict, stage: str, dataset, model_repo: str | None) -> str:
    from huggingface_hub import DatasetCard, DatasetCardData

    from maximalcai.manifest import constitution_hash

    counts = {name: len(split) for name, split in dataset.items()}
    kinds: dict[str, int] = {}
    for kind in dataset["train"]["decided_by"]:
        kinds[kind] = kinds.get(kind, 0) + 1
    data = DatasetCardData(
        language=["en"],
        task_categories=["text-generation"],
        size_categories=["n<1K"],
        tags=["dpo", "preference", "constitutional-ai", "maximalcai"],
        pretty_name=f"maximalcai {stage} pairs",
    )
    content = "\n".join(
        [
            "---",
            data.to_yaml(),
            "---",
            f"# maximalcai {stage} preference pairs",
            "",
            "Chosen/rejected pairs in TRL's preference format (`prompt`, `chosen`, `rejected`, plain strings in the",
            "project's `### Instruction:` / `### Response:` format), written by a base model with few-shot prompts "
            "and",
            "labelled without human raters: checks in code, the constitution and a safety classifier.",
            "",
            f"- splits: {json.dumps(counts)} (`test`: held out from training; the evaluation's preference accuracy)",
            f"- decided by (train): {json.dumps(dict(sorted(kinds.items())))}",
            f"- constitution sha256: `{constitution_hash(cfg['constitution'])}`, seed {cfg['seed']}",
            *(
                [f"- the model trained on it: [{model_repo}](https://huggingface.co/{model_repo})"]
                if model_repo
                else []
            ),
            "",
            "```python",
            "from datasets import load_dataset",
            "pairs = load_dataset('<this repo>')  # DatasetDict: train, test",
            "```",
            "",
            "Columns beyond the three TRL reads: `kind` and `decided_by` (what made the pair), `principle_ids`,",
            "`soft_label` and `margin`, the safety labels of both sides, `constitution_hash`.",
            "",
            "Limits: machine-written and machine-labelled by small models; read examples before training on it.",
        ]
    )
    return str(DatasetCard(content))


def model_folder(stage: str, what: str) -> Path:
    """The folder to upload: the adapter (with the card training wrote) or the merged export (with its card)."""
    folder = Path(f"results/{stage}/{'adapter' if what == 'adapter' else 'export'}")
    card = folder / "README.md"
    if not card.is_file():
        target = f"{stage}_model" if what == "adapter" else f"{stage}_export"
        raise PublishError(f"{folder}: not built; run: snakemake --cores 1 {target}")
    return folder


def publish(
    cfg: dict,
    stage: str,
    what: str,
    dataset_repo: str | None,
    model_repo: str | None,
    local: str | None = None,
    private: bool = True,
) -> dict[str, Any]:
    """Write (``local``) or upload the stage's pairs and model. Returns what was written or uploaded where."""
    pairs_path = Path(f"results/{stage}/pairs.parquet")
    if not pairs_path.is_file():
        raise PublishError(f"{pairs_path}: not built; run: snakemake --cores 1 {stage}_pairs")
    dataset = pairs_dataset(pairs_path)
    card = dataset_card(cfg, stage, dataset, model_repo)
    folder = model_folder(stage, what)
    if local:
        out = Path(local)
        dataset.save_to_disk(str(out / "dataset"))
        (out / "dataset" / "README.md").write_text(card)
        shutil.copytree(folder, out / "model", dirs_exist_ok=True, ignore=shutil.ignore_patterns(".snakemake*"))
        return {
            "dataset": str(out / "dataset"),
            "model": str(out / "model"),
            "splits": {k: len(v) for k, v in dataset.items()},
        }
    if not (dataset_repo or model_repo):
        raise PublishError(
            "name where to upload: --dataset-repo USER/NAME and/or --model-repo USER/NAME (or --local DIR)"
        )
    from huggingface_hub import DatasetCard, HfApi, get_token

    from maximalcai import patches

    patches.hub_timeouts.bound_hub_requests()
    token = get_token()
    if not token:
        raise PublishError("no Hugging Face token: set HF_TOKEN (a write token) or run `hf auth login`")
    api = HfApi(token=token)
    done: dict[str, Any] = {}
    if dataset_repo:
        api.create_repo(dataset_repo, repo_type="dataset", private=private, exist_ok=True)
        dataset.push_to_hub(dataset_repo, token=token, private=private)
        DatasetCard(card).push_to_hub(dataset_repo, token=token)
        done["dataset"] = f"https://huggingface.co/datasets/{dataset_repo}"
    if model_repo:
        api.create_repo(model_repo, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=model_repo, ignore_patterns=[".snakemake*", "*.partial"])
        done["model"] = f"https://huggingface.co/{model_repo}"
    return done
