"""A KV cache that grows in place and that rows can join: subclasses of transformers' ``DynamicLayer`` and
``DynamicCache`` that override their update and row-selection internals."""

from __future__ import annotations

import functools

from maximalcai.patches import require

require(__name__)


def growing_cache(config, own_masks: bool):
    """A DynamicCache whose full-attention layers append each step's keys and values into spare capacity
    instead of concatenating them (``torch.cat`` copied the whole cache every step: 13% of a few-shot decoding
    step on a CPU), and that more rows can join (continuous batching). ``own_masks``: the backend masks sliding
    windows itself (in real positions), so every layer keeps every slot; otherwise the config's layer types are
    kept, transformers' sliding layers included (rows cannot join those: ``can_join``).
    """
    from transformers.cache_utils import DynamicLayer

    GrowingLayer, GrowingCache = cache_classes()
    if own_masks:
        cache = GrowingCache()
        cache.layer_class_to_replicate = GrowingLayer
        return cache
    cache = GrowingCache(config=config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def can_join(config, own_masks: bool) -> bool:
    """Whether rows can join a running batch's cache: every layer of it is a growing one."""
    GrowingLayer, _ = cache_classes()
    return own_masks or all(isinstance(layer, GrowingLayer) for layer in growing_cache(config, own_masks).layers)


def spare(needed: int) -> int:
    """Slots to reserve for ``needed``: a quarter more, so decoding steps write in place (a reserve copies the
    cache) while the spare stays a quarter of the cache, not the whole of it (doubling took twice the memory
    on long prompts: benchmarks/memory.py)."""
    return max(64, needed + needed // 4)


@functools.cache
def cache_classes():
    """(GrowingLayer, GrowingCache), made once: transformers is imported on first use only."""
    import torch
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def lazy_initialization(self, key_states, value_states) -> None:
            super().lazy_initialization(key_states, value_states)
            self.length, self.buffers = 0, None

        def _reserve(self, rows: int, needed: int, like) -> None:
            capacity = spare(needed)
            fresh = [
                torch.empty((rows, t.shape[1], capacity, t.shape[3]), dtype=t.dtype, device=t.device) for t in like
            ]
            if self.buffers is not None and self.length:
                for new, old in zip(fresh, self.buffers):
                    new[:, :, : self.length] = old[:, :, : self.length]
            self.buffers = fresh

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if self.buffers is None or end > self.buffers[0].shape[2]:
                self._reserve(key_states.shape[0], end, (key_states, value_states))
            for buffer, new in zip(self.buffers, (key_states, value_states)):
                buffer[:, :, self.length : end] = new
            self.length = end
            self.keys, self.values = (buffer[:, :, :end] for buffer in self.buffers)
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length if self.is_initialized else 0

        def batch_select_indices(self, indices) -> None:
            if self.get_seq_length() > 0:
                self.buffers = [buffer[indices, :, : self.buffers[0].shape[2]] for buffer in self.buffers]
                self.keys, self.values = (buffer[:, :, : self.length] for buffer in self.buffers)

        def append_rows(self, other, width: int) -> None:
            """Stack ``other``'s rows under this layer's, both right-aligned in ``width`` slots; the slots
            before each side's own are zeros (finite, so masked attention over them stays exact)."""
            rows = self.buffers[0].shape[0] + other.buffers[0].shape[0]
            capacity = spare(width)
            fresh = [
                torch.zeros((rows, b.shape[1], capacity, b.shape[3]), dtype=b.dtype, device=b.device)
                for b in self.buffers
            ]
            first = self.buffers[0].shape[0]
            for new, mine, theirs in zip(fresh, self.buffers, other.buffers):
                new[:first, :, width - self.length : width] = mine[:, :, : self.length]
                new[first:, :, width - other.length : width] = theirs[:, :, : other.length]
            self.buffers, self.length = fresh, width
            self.keys, self.values = (buffer[:, :, :width] for buffer in self.buffers)

        def drop_leading(self, slots: int) -> None:
            """Forget the first ``slots`` slots (padding no row uses any more); their memory goes at the next
            reserve."""
            if self.get_seq_length() > 0 and slots:
                self.buffers = [buffer[:, :, slots:] for buffer in self.buffers]
                self.length -= slots
                self.keys, self.values = (buffer[:, :, : self.length] for buffer in self.buffers)

    class GrowingCache(DynamicCache):
        def drop_leading(self, slots: int) -> None:
            """Drop the first ``slots`` slots of every layer: continuous batching's padding once its rows left."""
            for layer in self.layers:
                layer.drop_leading(slots)

        def append_rows(self, other, width: int) -> None:
            """Add ``other``'s rows (a cache of prompts just prefilled) to this one's: continuous batching."""
            for mine, theirs in zip(self.layers, other.layers):
                if not (isinstance(mine, GrowingLayer) and isinstance(theirs, GrowingLayer)):
                    raise NotImplementedError(f"rows cannot join a {type(mine).__name__} cache layer")
                mine.append_rows(theirs, width)

    return GrowingLayer, GrowingCache
