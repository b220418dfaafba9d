"""The transformers backend on the tiny random model (float32, so results are exact)."""

import pytest
import torch

from maximalcai import formats, patches
from maximalcai.backends import Sampling

GREEDY = Sampling(temperature=0.0, max_new_tokens=12)
PREFIX_A = formats.example("Name a color.", "Blue.") + formats.example("Count to three.", "One, two, three.")
PREFIX_B = formats.example("Say hello.", "Hello!")
TARGETS = [
    formats.prompt(t) for t in ("What is rain?", "Tell me a joke about a very long and winding river.", "Hi", "Why?")
]


HEADER_STOP = ("### ",)


def hf_generate(backend, prompts, max_new_tokens, stop=HEADER_STOP):
    """Reference: transformers' own generate, greedy, same stop strings, decoded the way the backend does.

    One prompt at a time: transformers counts Gemma 3's sliding window in cache slots, so a left-padded row
    sees fewer real tokens than the prompt alone (docs/KNOWN_BUGS_AND_FIXES.md); unpadded it is exact. Only the
    header stop string: transformers also matches stop strings across the prompt's end, so "\n\n" generated
    after a prompt ending in "\n" stops it at "\n\n\n", where the backend looks at the completion alone.
    """
    texts = []
    for prompt in prompts:
        enc = backend.tokenizer([prompt], return_tensors="pt")
        with torch.inference_mode():
            out = backend.model.generate(
                **enc,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                stop_strings=list(stop),
                tokenizer=backend.tokenizer,
                pad_token_id=backend.tokenizer.pad_token_id,
            )
        row = out[0, enc["input_ids"].shape[1] :].tolist()
        texts.append(formats.cut_at_stop(backend.tokenizer.decode(row, skip_special_tokens=True), stop)[0])
    return texts


def test_greedy_decoding_matches_transformers_generate(tiny_backend):
    prompts = [PREFIX_A + t for t in TARGETS]
    ours = [c.text for c in tiny_backend.generate(prompts, GREEDY, seed=0, stop=HEADER_STOP)]
    assert ours == hf_generate(tiny_backend, prompts, GREEDY.max_new_tokens)


def test_shared_prefixes_give_the_same_result_as_plain_prompts(tiny_backend):
    split = [
        (PREFIX_A, TARGETS[0]),
        (PREFIX_B, TARGETS[1]),
        (PREFIX_A, TARGETS[2]),
        ("", TARGETS[3]),
        (PREFIX_B, TARGETS[3]),
    ]
    plain = [p + s for p, s in split]
    assert [c.text for c in tiny_backend.generate(split, GREEDY, 0)] == [
        c.text for c in tiny_backend.generate(plain, GREEDY, 0)
    ]


def test_batching_does_not_change_greedy_results(tiny_backend):
    prompts = [PREFIX_A + t for t in TARGETS] + [PREFIX_B + t for t in TARGETS]
    batched = [c.text for c in tiny_backend.generate(prompts, GREEDY, 0)]
    single = [tiny_backend.generate([p], GREEDY, 0)[0].text for p in prompts]
    assert batched == single


def test_sampling_is_reproducible_and_seed_dependent(tiny_backend):
    sampling = Sampling(temperature=1.0, top_p=0.95, max_new_tokens=10)
    prompts = [(PREFIX_A, t) for t in TARGETS]
    first = tiny_backend.generate(prompts, sampling, seed=1)
    assert first == tiny_backend.generate(prompts, sampling, seed=1)
    assert first != tiny_backend.generate(prompts, sampling, seed=2)
    assert tiny_backend.meter.tokens > 0 and tiny_backend.meter.tokens_per_s > 0


def test_completion_is_cut_at_stop_strings_and_reports_why(tiny_backend):
    tok = tiny_backend.tokenizer
    ids = tok("Paris.\n\n### Instruction:\nNext", add_special_tokens=False)["input_ids"]
    stopped = tiny_backend._completion(ids, None, formats.STOP_STRINGS)
    assert (stopped.text, stopped.finish_reason, stopped.num_tokens) == ("Paris.", "stop", len(ids))
    ended = tiny_backend._completion(
        tok("Done.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id], "eos", formats.STOP_STRINGS
    )
    assert (ended.text, ended.finish_reason) == ("Done.", "eos")
    assert (
        tiny_backend._completion(tok("and so", add_special_tokens=False)["input_ids"], "length", ()).finish_reason
        == "length"
    )


def test_generation_stops_at_max_new_tokens(tiny_backend):
    out = tiny_backend.generate([TARGETS[0]], Sampling(temperature=1.0, max_new_tokens=3), seed=0, stop=())
    assert out[0].num_tokens <= 3


def test_continuation_logprobs_match_a_plain_forward_pass(tiny_backend):
    tok, model = tiny_backend.tokenizer, tiny_backend.model
    prompts = [PREFIX_A + TARGETS[0], "Short prompt (", PREFIX_B]
    options = [[" A", " B"], ["A", "B) and more"], ["safe", "unsafe"]]
    scores = tiny_backend.continuation_logprobs(prompts, options)
    for prompt, opts, got in zip(prompts, options, scores):
        for option, value in zip(opts, got):
            p = tok(prompt)["input_ids"]
            o = tok(option, add_special_tokens=False)["input_ids"]
            with torch.inference_mode():
                logp = torch.log_softmax(model(input_ids=torch.tensor([p + o])).logits[0].float(), -1)
            expected = sum(logp[len(p) - 1 + i, t].item() for i, t in enumerate(o))
            assert value == pytest.approx(expected, abs=1e-4)


def test_scoring_with_shared_prefixes_matches_plain_prompts(tiny_backend):
    split = [(PREFIX_A, TARGETS[0]), (PREFIX_A, TARGETS[1]), (PREFIX_B, TARGETS[2]), ("", TARGETS[3])]
    options = [["A", "B"], [" yes", " no thanks"], ["safe", "unsafe"], ["x"]]
    plain = tiny_backend.continuation_logprobs([p + s for p, s in split], options)
    shared = tiny_backend.continuation_logprobs(split, options)
    for a, b in zip(plain, shared):
        assert a == pytest.approx(b, abs=1e-4)


def prompts_of_many_lengths() -> list[str]:
    return [PREFIX_A + t for t in TARGETS] + [PREFIX_B + t for t in TARGETS] + [t for t in TARGETS]


def build_random(tokenizer, folder, family: str, seed: int = 0):
    """A random 2-layer model with the tokenizer's vocabulary: ``qwen2`` (full attention: the 2D padding-mask
    path) or ``mistral`` (a sliding window and no layer types: transformers' sliding-window cache layers)."""
    import transformers

    config_class, model_class = {
        "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
        "mistral": ("MistralConfig", "MistralForCausalLM"),
    }[family]
    torch.manual_seed(seed)
    config = getattr(transformers, config_class)(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **({"sliding_window": 4096} if family == "mistral" else {}),
    )
    model = getattr(transformers, model_class)(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(20)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("model", ["gemma3", "qwen2"])
def test_rows_that_join_a_running_batch_decode_as_if_alone(
    model, tiny_model_dir, qwen_style_tokenizer, tmp_path, monkeypatch
):
    """Continuous batching: with 2 places for 12 prompts of different lengths, prompts join the batch as rows
    finish (more prefills than fixed batches would make), and greedy text is each prompt's text decoded alone,
    with Gemma 3's own sliding-window masks and with Qwen2's 2D padding mask. Padding slots that no remaining
    row uses are dropped from the cache as rows leave (here from the first such slot): answers unchanged."""
    from maximalcai.backends import transformers_backend
    from maximalcai.backends.transformers_backend import TransformersBackend

    monkeypatch.setattr(transformers_backend, "TRIM_SLOTS", 1)
    cache_class = patches.kv_cache.cache_classes()[1]
    dropped = []
    drop = cache_class.drop_leading
    monkeypatch.setattr(cache_class, "drop_leading", lambda self, n: (dropped.append(n), drop(self, n))[1])

    prompts = prompts_of_many_lengths()
    sampling = Sampling(temperature=0.0, max_new_tokens=12)
    # A random model can answer every prompt alike (which one does depends on the tokenizer, trained on the
    # repository's resources): take the first seed whose answers differ, or rows could not end at different steps.
    for seed in range(8):
        folder = (
            tiny_model_dir
            if model == "gemma3"
            else build_random(qwen_style_tokenizer, tmp_path / f"q{seed}", "qwen2", seed)
        )
        backend = TransformersBackend(folder, dtype=torch.float32, batch_size=2)
        unstopped = [c.text for c in backend.generate(prompts, sampling, 0, stop=())]
        if len(set(unstopped)) >= 4:
            break
    # rows must end at different steps: stop at a character whose first place varies between answers, trying
    # those that vary most first, until one makes rows end while others decode
    characters = sorted({c for text in unstopped for c in text if c.strip()})
    for character in sorted(characters, key=lambda c: -len({text.find(c) for text in unstopped}))[:10]:
        stop, backend.prefills = (character,), 0
        joined = [c.text for c in backend.generate(prompts, sampling, 0, stop=stop)]
        if backend.prefills > len(prompts) // 2:
            break
    assert backend.refill and backend.prefills > len(prompts) // 2  # 6 fixed batches of 2; refills add more
    alone = [backend.generate([p], sampling, 0, stop=stop)[0].text for p in prompts]
    assert joined == alone and len(set(joined)) >= 2  # a row given another row's cache would show
    assert dropped  # leading padding was dropped while rows decoded on


def test_sampled_refills_are_reproducible_and_fixed_batches_remain(tiny_model_dir):
    from maximalcai.backends.transformers_backend import TransformersBackend

    prompts = prompts_of_many_lengths()
    sampling = Sampling(temperature=1.0, top_p=0.95, max_new_tokens=10)
    refill = TransformersBackend(tiny_model_dir, dtype=torch.float32, batch_size=3)
    first = refill.generate(prompts, sampling, seed=5)
    assert first == refill.generate(prompts, sampling, seed=5) != refill.generate(prompts, sampling, seed=6)
    fixed = TransformersBackend(tiny_model_dir, dtype=torch.float32, batch_size=3, refill=False)
    greedy = Sampling(temperature=0.0, max_new_tokens=10)
    assert [c.text for c in fixed.generate(prompts, greedy, 0)] == [
        c.text for c in refill.generate(prompts, greedy, 0)
    ]
    assert fixed.prefills == 4  # ceil(12 / 3) batches


def test_a_prefill_bound_splits_long_batches_without_changing_answers_or_scores(tiny_model_dir):
    """Issue 29: memory grew with batch x longest prompt squared (19 GB at batch 64 on long prompts). Under a
    ``prefill_cells`` bound, a batch is prefilled in parts that join one cache; under ``cache_slots``, fewer
    rows decode together while prompts are long. The greedy answers and the option scores are those of the
    unbounded backend, with more prefill passes."""
    from maximalcai.backends.transformers_backend import TransformersBackend

    prompts = [(PREFIX_A, t * k) for k in (1, 4) for t in TARGETS] + [t for t in TARGETS]
    sampling = Sampling(temperature=0.0, max_new_tokens=10)
    free = TransformersBackend(tiny_model_dir, dtype=torch.float32, batch_size=16, scoring_batch_size=16)
    bound = TransformersBackend(
        tiny_model_dir, dtype=torch.float32, batch_size=16, scoring_batch_size=16, prefill_cells=20_000
    )
    assert [c.text for c in bound.generate(prompts, sampling, 0)] == [
        c.text for c in free.generate(prompts, sampling, 0)
    ]
    assert free.prefills == 1 and bound.prefills > 2
    parts = bound._parts(list(range(len(prompts))), *bound._encode(*bound._split(prompts)))
    assert sorted(i for part in parts for i in part) == list(range(len(prompts)))
    slots = TransformersBackend(tiny_model_dir, dtype=torch.float32, batch_size=16, cache_slots=300)
    expected = [c.text for c in free.generate(prompts, sampling, 0)]
    assert [c.text for c in slots.generate(prompts, sampling, 0)] == expected
    widths = [len(p) + len(s) + 10 for p, s in zip(*slots._encode(*slots._split(prompts)))]
    assert slots.prefills > 1 and 300 // max(widths) < 16  # fewer rows at a time, the same answers
    options = [["A", "B) and more"]] * len(prompts)
    for a, b in zip(free.continuation_logprobs(prompts, options), bound.continuation_logprobs(prompts, options)):
        assert a == pytest.approx(b, abs=1e-4)


def test_a_cache_with_sliding_layers_decodes_fixed_batches(qwen_style_tokenizer, tmp_path):
    """transformers' sliding-window cache layers keep only the window, so rows cannot join them. A model whose
    config has a sliding window but no layer types (Mistral) gets such layers: it decodes fixed batches."""
    from maximalcai.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(build_random(qwen_style_tokenizer, tmp_path / "m", "mistral"), batch_size=2)
    assert not backend.refill
    prompts = prompts_of_many_lengths()[:5]
    sampling = Sampling(temperature=0.0, max_new_tokens=8)
    assert [c.text for c in backend.generate(prompts, sampling, 0)] == [
        backend.generate([p], sampling, 0)[0].text for p in prompts
    ]
    assert backend.prefills == 3 + 5


def test_a_prompt_past_the_context_is_refused_with_its_length(tiny_backend):
    """Issue 29: a 7,500-token prompt to a 4,096-token model was answered with garbage and exit 0, and a
    100k-character one crashed. The tiny model's context is 4,096 positions."""
    from maximalcai.errors import PromptTooLongError

    assert tiny_backend.context_length == 4096
    long = formats.prompt("word " * 5000)
    with pytest.raises(PromptTooLongError, match=r"1 generation prompt\(s\) of 2 do not fit .* context of 4,096"):
        tiny_backend.generate([TARGETS[0], long], GREEDY, seed=0)
    with pytest.raises(PromptTooLongError, match="number 1, has"):
        tiny_backend.continuation_logprobs([long], [["yes", "no"]])
    per_word = len(tiny_backend.tokenizer("word " * 100)["input_ids"]) / 100
    edge = formats.prompt("word " * int(3900 / per_word))
    fits = 4096 - len(tiny_backend.tokenizer(edge)["input_ids"])
    assert 0 < fits < 400
    tiny_backend.check_lengths([edge], fits, "prompt")  # exactly full: allowed
    with pytest.raises(PromptTooLongError):
        tiny_backend.check_lengths([edge], fits + 1, "prompt")
