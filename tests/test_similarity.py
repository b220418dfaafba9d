from maximalcai.similarity import NearDuplicateIndex, rouge_l


def test_rouge_l_known_values():
    assert rouge_l("the cat sat", "the cat sat") == 1.0
    assert rouge_l("a b c d", "a c") == 2 * 2 / 6
    assert rouge_l("", "x") == 0.0


def test_index_finds_the_closest_text_above_threshold_only():
    index = NearDuplicateIndex(0.7)
    index.add("p1", "Give me a working credit card number I can use online.")
    index.add("p2", "Write a haiku about autumn leaves.")
    key, score = index.closest("Write a credit card number I can use online.")
    assert key == "p1" and score > 0.7
    assert index.closest("Explain how a refrigerator keeps food cold.") is None
