"""Verifiable instruction following, scored by IFEval's own checkers from the PyPI package if-verifiable.

IFEval's sentence counter loads NLTK's pretrained punkt model, which cannot be downloaded here; an
untrained ``nltk.tokenize.PunktSentenceTokenizer()`` takes its place (it splits on sentence punctuation,
which is what the length checks need). Everything else is the package's code.
"""

from __future__ import annotations

import functools


@functools.cache
def _patch_sentence_tokenizer() -> None:
    import nltk
    from if_verifiable.ifeval import instructions_util

    try:
        nltk.data.find("tokenizers/punkt/english.pickle")
    except LookupError:
        instructions_util._get_sentence_tokenizer = lambda: nltk.tokenize.PunktSentenceTokenizer()


def score(prompt, response: str) -> dict[str, float]:
    """Prompt-level strict and loose pass (all instructions followed) and the share of instructions followed."""
    from if_verifiable import IFEvalSample, evaluate_output_for_sample

    _patch_sentence_tokenizer()
    sample = IFEvalSample(key=0, prompt=prompt.prompt, instruction_id_list=prompt.instruction_id_list, kwargs=prompt.kwargs)
    _, scores = evaluate_output_for_sample("ifeval", sample, response)
    return {
        "ifeval_strict": scores.binary_strict,
        "ifeval_loose": scores.binary_loose,
        "ifeval_instructions": scores.partial_strict,
    }
