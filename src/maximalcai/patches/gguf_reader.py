"""Parse each GGUF file once while transformers imports a model from it (``gguf.GGUFReader``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from maximalcai.patches import require

require(__name__)


@contextmanager
def one_gguf_read() -> Iterator[None]:
    """Parse each GGUF once while transformers loads from it.

    transformers opens a fresh ``gguf.GGUFReader`` for the tokenizer, for the config and for the weights, and
    gguf-py parses the whole metadata each time: about 30 s per read for Gemma 3's 262k-token vocabulary on
    one core, 90 of the import's 100 s. The reader is read-only (a numpy memmap), so one can serve all three.
    tests/test_models.py checks that transformers still takes its reader from ``gguf.GGUFReader``.
    """
    import gguf

    original = gguf.GGUFReader
    readers: dict[tuple[str, str], Any] = {}

    def shared_reader(path, mode="r"):
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = shared_reader
    try:
        yield
    finally:
        gguf.GGUFReader = original
