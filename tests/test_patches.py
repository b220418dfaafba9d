"""Every patch of a library's internals (src/maximalcai/patches): its version guard, and a test per patch that
fails when the patch stops taking effect with the installed libraries (then check the new version, update the
patch and its range in ``patches.WRITTEN_FOR``)."""

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch

from conftest import REPO
from maximalcai import patches


def test_every_patch_module_has_a_version_range_and_a_test_here():
    modules = {p.stem for p in (REPO / "src/maximalcai/patches").glob("*.py")} - {"__init__"}
    assert modules == set(patches.WRITTEN_FOR)
    tested = set(re.findall(r"^def test_([a-z]+_[a-z]+)_", Path(__file__).read_text(), re.M))
    assert set(patches.WRITTEN_FOR) <= tested, set(patches.WRITTEN_FOR) - tested


def test_the_pinned_versions_are_inside_every_patch_range():
    from packaging.specifiers import SpecifierSet

    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", (REPO / "constraints/cpu.txt").read_text(), re.M))
    for name, libraries in patches.WRITTEN_FOR.items():
        for library, spec in libraries.items():
            assert pins[library] in SpecifierSet(spec), (name, library, pins[library], spec)


def test_a_library_outside_a_patch_range_fails_loudly_with_the_fix(monkeypatch):
    patches.require("maximalcai.patches.trl_scoring")  # the installed TRL is inside the range
    monkeypatch.setattr(metadata, "version", lambda library: "1.99.0" if library == "trl" else "0")
    with pytest.raises(patches.PatchVersionError) as err:
        patches.require("maximalcai.patches.trl_scoring")
    message = str(err.value)
    assert "written for trl>=1.15,<1.17, but trl 1.99.0 is installed" in message
    assert "python -m pytest tests/test_patches.py" in message


def test_kv_cache_grows_in_place_and_takes_joining_rows():
    layer_class, cache_class = patches.kv_cache.cache_classes()
    layer = layer_class()
    keys = torch.randn(2, 1, 3, 4)
    layer.update(keys, keys + 1)
    buffer = layer.buffers[0]
    for _ in range(5):  # decoding steps write into the spare capacity: the same storage, no torch.cat copy
        layer.update(torch.randn(2, 1, 1, 4), torch.randn(2, 1, 1, 4))
    assert layer.buffers[0] is buffer and layer.get_seq_length() == 8
    torch.testing.assert_close(layer.keys[:, :, :3], keys)
    other = layer_class()
    other.update(torch.ones(1, 1, 2, 4), torch.ones(1, 1, 2, 4))
    layer.append_rows(other, width=8)
    assert layer.keys.shape == (3, 1, 8, 4)
    torch.testing.assert_close(layer.keys[2, :, 6:], torch.ones(1, 2, 4))
    assert float(layer.keys[2, :, :6].abs().sum()) == 0.0
    assert isinstance(cache_class(), __import__("transformers").DynamicCache)


def test_hub_timeouts_end_a_request_to_a_hub_that_never_answers(monkeypatch, tmp_path):
    """A proxy that accepts the connection and never answers hung snapshot_download for good (its first request,
    repo_info, has no timeout). Bounded, the import fails after its tries with an error naming the hub and the
    way around it."""
    import socket
    import threading
    import time

    from huggingface_hub import constants

    from maximalcai import models
    from maximalcai.errors import ModelSourceError

    server = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(10)], daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(patches.hub_timeouts, "READ_S", 0.5)
    monkeypatch.setattr(models, "HUB_WAIT_S", 0.0)
    start = time.monotonic()
    with pytest.raises(ModelSourceError) as err:
        models.import_base_model(
            models.BaseModelSource.from_section({"source": "hub", "hub_id": "org/model", "revision": None}),
            tmp_path / "base",
        )
    assert time.monotonic() - start < 30
    assert f"could not download 'org/model' from {endpoint} after 3 tries" in str(err.value)
    assert "Timeout" in str(err.value) and "base_model.source: local" in str(err.value)
    server.close()
    # the way around it that the message prints is a real command of the installed huggingface_hub
    printed = re.search(r"\((hf download \S+ --local-dir DIR)\)", str(err.value))[1]
    hf = Path(sys.executable).with_name("hf")
    usage = subprocess.run([str(hf), *printed.split()[1:2], "--help"], capture_output=True, text=True, check=True)
    assert "--local-dir" in usage.stdout


def test_ifeval_punkt_checks_run_without_the_punkt_data():
    import nltk
    from if_verifiable.ifeval import instructions_util

    patches.ifeval_punkt.work_without_punkt_data()
    for resource in ("tokenizers/punkt/english.pickle", "tokenizers/punkt_tab/english/"):
        try:
            nltk.data.find(resource)
        except LookupError:
            continue
        pytest.skip(f"nltk data {resource} is installed here: the patch is not needed")
    assert instructions_util.count_sentences("One. Two. Three.") == 3
    assert instructions_util.nltk.word_tokenize("Two words") == ["Two", "words"]


def test_gguf_reader_parses_each_file_once_for_transformers(tmp_path, monkeypatch):
    import inspect

    import gguf
    import numpy as np
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    # one_gguf_read replaces gguf.GGUFReader; transformers must still look it up there at call time
    assert "from gguf import GGUFReader" in inspect.getsource(load_gguf_checkpoint)
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("tiny.answer", 42)
    writer.add_tensor("t", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    opened = []

    class Counting(gguf.GGUFReader):
        def __init__(self, p, mode="r"):
            opened.append(p)
            super().__init__(p, mode)

    monkeypatch.setattr(gguf, "GGUFReader", Counting)
    counting = gguf.GGUFReader
    with patches.gguf_reader.one_gguf_read():
        first, second = gguf.GGUFReader(path), gguf.GGUFReader(str(path))
        assert first is second and first.fields["tiny.answer"].contents() == 42
    assert len(opened) == 1 and gguf.GGUFReader is counting  # restored on the way out


def test_gguf_reader_slicing_a_plain_view_reads_every_field_and_tensor_as_the_library_does(tmp_path):
    """patches.gguf_reader.plain_slicing replaces GGUFReader._get: the same parts (values, dtypes, byte order),
    data indices, types and offsets for every field, the same bytes and shapes for every tensor."""
    import inspect

    import gguf
    import numpy as np

    assert list(inspect.signature(gguf.GGUFReader._get).parameters) == [
        "self",
        "offset",
        "dtype",
        "count",
        "override_order",
    ]
    path = tmp_path / "vocab.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("tiny.answer", 42)
    writer.add_string("tiny.name", "naïve tokens")
    writer.add_float32("tiny.eps", 1e-6)
    writer.add_token_list([f"tok{i}" for i in range(300)] + ["", "é", "<eos>"])
    writer.add_token_scores([float(-i) for i in range(303)])
    writer.add_array("tiny.nested", [[1, 2], [3]])
    writer.add_tensor("w", np.arange(12, dtype=np.float32).reshape(3, 4))
    writer.add_tensor("h", np.arange(8, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    ours, theirs = patches.gguf_reader.plain_slicing(gguf.GGUFReader)(path), gguf.GGUFReader(path)
    assert list(ours.fields) == list(theirs.fields) and len(ours.fields) > 8
    for name, field in theirs.fields.items():
        mine = ours.fields[name]
        assert (mine.offset, mine.data, mine.types) == (field.offset, field.data, field.types), name
        assert len(mine.parts) == len(field.parts), name
        for a, b in zip(mine.parts, field.parts):
            assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert ours.fields["tokenizer.ggml.tokens"].contents()[-2:] == ["é", "<eos>"]
    assert [(t.name, list(t.shape), t.data.dtype) for t in ours.tensors] == [
        (t.name, list(t.shape), t.data.dtype) for t in theirs.tensors
    ]
    assert all(np.array_equal(a.data, b.data) for a, b in zip(ours.tensors, theirs.tensors))


def test_onednn_linear_head_hook_keeps_one_matrix_product():
    """Regression (non-CPU heads keep the hook): a sliced hidden state fed to a gradient-free LM head made
    torch.matmul broadcast the whole [vocab, hidden] weight per row (bmm), 10x slower with merged adapters."""
    from torch.profiler import ProfilerActivity, profile

    head = torch.nn.Linear(16, 300, bias=False).requires_grad_(False)
    head.register_forward_pre_hook(patches.onednn_linear.contiguous_input)
    for rows in (4, 1):  # one row: .contiguous() is a no-op there and keeps the stride that defeats folding
        hidden = torch.randn(rows, 7, 16)[:, -1:, :]
        with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
            head(hidden)
        ops = {event.key for event in prof.key_averages()}
        assert "aten::bmm" not in ops and "aten::mm" in ops, rows


def test_onednn_linear_runs_cpu_linears_with_the_same_values(tiny_model_dir):
    """On a CPU the float32 linears (the LM head included) run in oneDNN with prepacked weights (2.2-2.5x
    faster for Gemma 3's head on AVX2 hosts) and give the dense product's values, for strided 3-D inputs too
    (the head gets ``hidden[:, -k:, :]``)."""
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoModelForCausalLM

    from maximalcai.models import load_model

    model = load_model(tiny_model_dir, torch.float32, "cpu")
    dense = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert not any(p.requires_grad for p in model.parameters())
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    weight = dense.get_output_embeddings().weight
    for rows in (4, 1):
        hidden = torch.randn(rows, 7, model.config.hidden_size)[:, -3:, :]
        with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
            logits = model.get_output_embeddings()(hidden)
        torch.testing.assert_close(logits, torch.nn.functional.linear(hidden, weight), rtol=1e-5, atol=1e-5)
        ops = {event.key for event in prof.key_averages()}
        assert "mkldnn::_linear_pointwise" in ops and "aten::bmm" not in ops, (rows, ops)
    ids = torch.randint(5, 500, (2, 30))
    with torch.inference_mode():
        torch.testing.assert_close(model(input_ids=ids).logits, dense(input_ids=ids).logits, rtol=1e-4, atol=1e-4)


def test_gqa_attention_equals_eager(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    ids = torch.randint(5, 500, (2, 40))
    mask = torch.ones_like(ids)
    mask[0, :7] = 0
    logits = []
    for impl in ("eager", patches.gqa_attention.register()):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=impl, dtype=torch.float32)
        with torch.inference_mode():
            logits.append(model(input_ids=ids, attention_mask=mask).logits[:, 7:])
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-5, atol=1e-5)


def test_trl_scoring_of_completions_gives_identical_logprobs(tiny_model_dir, monkeypatch):
    """The TRL patch must take effect (fewer rows through the LM head) and change nothing else. If TRL renames
    or stops consulting ``trainer.utils._use_triton``, this fails: check the new TRL and update
    ``score_only_completions_on_cpu`` (covered: TRL 1.15.0 and 1.16.0, the newest on PyPI on 2026-11-26)."""
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    add_fused_lm_head(model)
    ids = torch.randint(10, 500, (2, 20))
    labels = ids.clone()
    labels[:, :8] = -100  # the prompt
    labels[1, 15:] = -100  # padding
    rows = []
    apply = trl_utils._ChunkedLogProbFunction.apply

    def counting(hidden, *args):
        rows.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting)
    # TRL as installed (an earlier training test in this process may have patched it already)
    monkeypatch.setattr(trl_utils, "_use_triton", getattr(trl_utils._use_triton, "unpatched", trl_utils._use_triton))
    full = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
    assert patches.trl_scoring.score_only_completions_on_cpu()
    compact = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
    scored = int((labels[:, 1:] != -100).sum())  # positions with a next-token label
    assert rows == [2 * 19, scored], rows  # every shifted position, then only the labelled ones
    torch.testing.assert_close(full, compact, rtol=1e-5, atol=1e-5)


def test_trl_backward_reading_a_frozen_head_cast_once_gives_bit_identical_gradients(monkeypatch):
    """frozen_head_in_float32_once hands TRL's CPU backward slices of one float32 copy of a frozen bf16 head
    instead of casting each slice per call: the same gradient to the last bit, the copy made once for two
    backward passes; a trainable head keeps TRL's own path (its weight gradient too). If TRL renames or stops
    calling ``kernels.chunked_logprob._addmm_fp32``, this fails: check the new TRL and update the patch."""
    import trl.kernels.chunked_logprob as chunked

    monkeypatch.setattr(chunked, "_addmm_fp32", getattr(chunked._addmm_fp32, "unpatched", chunked._addmm_fp32))
    torch.manual_seed(0)
    vocab, width, chunk = 96, 16, 32  # three vocabulary slices
    head = (torch.randn(vocab, width) * 0.3).bfloat16()
    targets = torch.randint(0, vocab, (7,))
    hidden = torch.randn(7, width).bfloat16()

    def gradients(weight):
        grads = []
        for _ in range(2):
            h = hidden.clone().requires_grad_(True)
            logprobs, entropy, *_ = chunked.ChunkedLogProbFunction.apply(
                h, weight, None, targets, 1.0, chunk, None, 1.0, ("entropy",)
            )
            (logprobs.sum() + 0.1 * entropy.sum()).backward()
            grads.append((h.grad.clone(), None if weight.grad is None else weight.grad.clone()))
            weight.grad = None
        return grads

    frozen_before = gradients(head)
    trainable_before = gradients(head.clone().requires_grad_(True))
    casts = []
    real_float = torch.Tensor.float
    monkeypatch.setattr(torch.Tensor, "float", lambda t: casts.append(tuple(t.shape)) or real_float(t))
    assert patches.trl_scoring.frozen_head_in_float32_once()
    assert patches.trl_scoring.frozen_head_in_float32_once()  # a second call leaves one patch in place
    frozen_after = gradients(head)
    assert casts.count((vocab, width)) == 1 and (chunk, width) not in casts  # the whole head, once
    trainable_after = gradients(head.clone().requires_grad_(True))
    assert (chunk, width) in casts  # the trainable head's slices: TRL's own cast
    for before, after in ((frozen_before, frozen_after), (trainable_before, trainable_after)):
        for (h0, w0), (h1, w1) in zip(before, after):
            assert torch.equal(h0, h1) and (w0 is None) == (w1 is None)
            assert w0 is None or torch.equal(w0, w1)
    assert trainable_after[0][1] is not None
    other = (torch.randn(vocab, width) * 0.3).bfloat16()  # another frozen head: its own copy, not the first's
    patched = chunked._addmm_fp32
    monkeypatch.setattr(chunked, "_addmm_fp32", patched.unpatched)
    other_before = gradients(other)
    monkeypatch.setattr(chunked, "_addmm_fp32", patched)  # the same patch, its cache holding the first head's copy
    assert all(torch.equal(h0, h1) for (h0, _), (h1, _) in zip(other_before, gradients(other)))
