"""IFEval's checkers (if-verifiable) without nltk's punkt data files."""

from __future__ import annotations

import functools

from maximalcai.patches import require

require(__name__)


class _NltkWithoutPunktData:
    """``nltk`` as IFEval's checkers see it when no punkt data is installed: ``word_tokenize`` skips its
    punkt sentence split (``preserve_line=True``) and tokenizes the whole text with the Treebank tokenizer;
    everything else is nltk itself."""

    def __getattr__(self, name: str):
        import nltk

        return getattr(nltk, name)

    @staticmethod
    def word_tokenize(text: str, language: str = "english", preserve_line: bool = False) -> list[str]:
        import nltk

        return nltk.word_tokenize(text, language, preserve_line=True)


@functools.cache
def work_without_punkt_data() -> None:
    """Point if-verifiable's IFEval checkers at tokenizers that need no nltk data download when the punkt
    data is missing (no network in CI or on an air-gapped GPU box)."""
    import nltk
    from if_verifiable.ifeval import instructions_util

    try:
        nltk.data.find("tokenizers/punkt/english.pickle")
    except LookupError:
        instructions_util._get_sentence_tokenizer = lambda: nltk.tokenize.PunktSentenceTokenizer()
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:  # capital_word_frequency calls nltk.word_tokenize, which loads punkt_tab
        instructions_util.nltk = _NltkWithoutPunktData()
