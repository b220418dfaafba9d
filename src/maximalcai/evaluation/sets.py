"""The held-out evaluation prompts (resources/eval/): helpful (IFEval constraints), red-team, borderline.

They never enter a few-shot pool or demonstration file (tests/test_resources.py), and generated training
instructions close to any of them are dropped (``generation.filter_instructions``). Each set is cut to
``evaluation.max_prompts`` in file order (null: the whole set), so the same prompts are used for every
model and stage; the files are ordered so that any first N prompts spread over constraint types, hazard
categories and borderline kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from maximalcai.errors import ResourceError
from maximalcai.resources import read_jsonl

SETS = ("helpful", "redteam", "borderline")


@dataclass(frozen=True)
class EvalPrompt:
    id: str
    set: str
    prompt: str
    instruction_id_list: list[str] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)


def load_eval_prompts(cfg: dict) -> list[EvalPrompt]:
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    prompts: list[EvalPrompt] = []
    evaluation = cfg["evaluation"]
    for name in SETS:
        path = evaluation[name]
        rows = read_jsonl(path, {"prompt": str}, f"{name} eval set")[: evaluation["max_prompts"][name]]  # None: all
        for row in rows:
            ids, kwargs = row.get("instruction_id_list", []), row.get("kwargs", [])
            if name == "helpful":
                unknown = [i for i in ids if i not in INSTRUCTION_DICT]
                if not ids or unknown or len(kwargs) != len(ids):
                    raise ResourceError(
                        f"helpful eval set {path}: prompt '{row['id']}' needs instruction_id_list of IFEval "
                        f"instruction ids with one kwargs entry each (unknown: {unknown})"
                    )
            prompts.append(EvalPrompt(row["id"], name, row["prompt"], list(ids), list(kwargs)))
    return prompts
