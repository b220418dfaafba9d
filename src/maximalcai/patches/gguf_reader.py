"""Parse each GGUF file once, and fast, while transformers imports a model from it (``gguf.GGUFReader``)."""

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
    one core, 90 of the import's 100 s. The reader is read-only (a numpy memmap), so one can serve all three,
    and it reads through ``plain_slicing``. tests/test_patches.py checks that transformers still takes its
    reader from ``gguf.GGUFReader``.
    """
    import gguf

    original = gguf.GGUFReader
    plain = plain_slicing(original)
    readers: dict[tuple[str, str], Any] = {}

    def shared_reader(path, mode="r"):
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = plain(path, mode)
        return readers[key]

    gguf.GGUFReader = shared_reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


def plain_slicing(reader_class: type) -> type:
    """``reader_class`` (gguf-py's ``GGUFReader``) reading its fields through a plain ndarray view of its memmap.

    gguf-py reads every value with ``GGUFReader._get``, a slice of ``self.data``, a ``numpy.memmap``: each slice
    of a memmap runs numpy's Python-level ``memmap.__getitem__`` and ``__array_finalize__``, and Gemma 3's
    262k-token vocabulary takes two slices per token. Slicing ``data.view(numpy.ndarray)`` (the same mapped
    bytes, no copy) gives the same arrays (values, dtypes, byte order) without that Python: the read took 2.5 s
    instead of 9.5 on the AVX512-BF16 host (docs/KNOWN_BUGS_AND_FIXES.md). The tensors' arrays are ndarray
    views of the same mapping instead of memmaps. tests/test_patches.py compares every field and tensor of a
    GGUF with the library's own reader, and checks ``_get``'s signature is the one this replaces.
    """
    import numpy as np

    class PlainSlicingReader(reader_class):
        def _get(self, offset, dtype, count=1, override_order=None):
            data = self.__dict__.get("_plain_data")
            if data is None:
                data = self._plain_data = self.data.view(np.ndarray)
            count = int(count)
            kind = np.dtype(dtype)
            arr = data[offset : offset + kind.itemsize * count].view(dtype=kind)[:count]
            return arr.view(arr.dtype.newbyteorder(self.byte_order if override_order is None else override_order))

    return PlainSlicingReader
