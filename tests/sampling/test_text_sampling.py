"""Decoding strategies (genzoo.sampling.text): filters on hand-computed logits, seeds, the generate loop."""

import string

import pytest
import torch

from genzoo.core.errors import GenzooError
from genzoo.sampling.text import (
    apply_repetition_penalty,
    apply_temperature,
    check_options,
    choose_next,
    generate,
    min_p_filter,
    top_k_filter,
    top_p_filter,
)

NEG = float("-inf")


def kept(row: torch.Tensor) -> set[int]:
    return set(torch.nonzero(torch.isfinite(row)).flatten().tolist())


def logits_of(probs) -> torch.Tensor:
    return torch.tensor([probs], dtype=torch.float64).log().float()


# ----------------------------------------------------------------------------- filters


def test_top_k_keeps_exactly_k():
    x = torch.tensor([[1.0, 5.0, 3.0, 2.0, 4.0], [0.0, -1.0, 7.0, 7.5, 6.0]])
    out = top_k_filter(x, 2)
    assert kept(out[0]) == {1, 4} and kept(out[1]) == {2, 3}
    assert torch.equal(out[0, [1, 4]], x[0, [1, 4]])  # survivors unchanged
    ties = top_k_filter(torch.tensor([[1.0, 1.0, 1.0, 0.0]]), 2)
    assert len(kept(ties[0])) == 2
    assert torch.equal(top_k_filter(x, 0), x) and torch.equal(top_k_filter(x, 99), x)


def test_top_p_keeps_smallest_set_reaching_p():
    # probabilities 0.05, 0.5, 0.15, 0.3 (shuffled on purpose)
    x = logits_of([0.05, 0.5, 0.15, 0.3])
    assert kept(top_p_filter(x, 0.4)[0]) == {1}  # 0.5 >= 0.4
    assert kept(top_p_filter(x, 0.75)[0]) == {1, 3}  # 0.5 + 0.3 = 0.8 >= 0.75; 0.5 alone is not
    assert kept(top_p_filter(x, 0.85)[0]) == {1, 3, 2}  # 0.95
    assert kept(top_p_filter(x, 0.97)[0]) == {0, 1, 2, 3}
    assert kept(top_p_filter(x, 1e-6)[0]) == {1}  # at least one token survives
    assert torch.equal(top_p_filter(x, 1.0), x)


def test_min_p_keeps_tokens_above_fraction_of_max():
    x = logits_of([0.05, 0.5, 0.15, 0.3])
    assert kept(min_p_filter(x, 0.2)[0]) == {1, 2, 3}  # threshold 0.1
    assert kept(min_p_filter(x, 0.5)[0]) == {1, 3}  # threshold 0.25
    assert kept(min_p_filter(x, 0.7)[0]) == {1}  # threshold 0.35
    assert kept(min_p_filter(x, 1.0)[0]) == {1}
    assert torch.equal(min_p_filter(x, 0.0), x)


def test_repetition_penalty_divides_positive_multiplies_negative():
    x = torch.tensor([[2.0, -2.0, 1.0, -1.0], [2.0, -2.0, 1.0, -1.0]])
    out = apply_repetition_penalty(x, [[0, 1, 1], []], 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0, -1.0], [2.0, -2.0, 1.0, -1.0]]  # seen twice = penalised once
    up = apply_repetition_penalty(x[:1], torch.tensor([[0, 1]]), 0.5)  # < 1 encourages repeats
    assert up.tolist() == [[4.0, -1.0, 1.0, -1.0]]
    assert x.tolist()[0] == [2.0, -2.0, 1.0, -1.0]  # input untouched
    masked = apply_repetition_penalty(torch.tensor([[NEG, 1.0]]), [[0]], 3.0)
    assert masked[0, 0] == NEG


def test_temperature_scales_and_zero_is_argmax():
    x = torch.randn(64, 50, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(apply_temperature(x, 0.5), x * 2)
    assert torch.equal(choose_next(x, temperature=0), x.argmax(-1))
    # greedy is unchanged by every filter
    assert torch.equal(choose_next(x, temperature=0, top_k=3, top_p=0.2, min_p=0.5), x.argmax(-1))
    with pytest.raises(GenzooError):
        apply_temperature(x, 0)


def test_sampling_follows_tempered_distribution():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    x = probs.log().expand(40_000, 4)
    g = torch.Generator().manual_seed(1)
    draws = choose_next(x, temperature=0.5, generator=g)
    freq = torch.bincount(draws, minlength=4).double() / len(draws)
    expect = probs.double() ** 2 / (probs.double() ** 2).sum()  # p^(1/T)
    assert torch.allclose(freq, expect, atol=0.01)
    # top-p 0.65 keeps {0.4, 0.3}: nothing else is ever drawn, renormalised 4:3
    draws = choose_next(x, top_p=0.65, generator=g)
    freq = torch.bincount(draws, minlength=4).double() / len(draws)
    assert freq[0] == 0 and freq[1] == 0 and abs(freq[3] - 4 / 7) < 0.01


def test_seeded_sampling_reproducible_and_seeds_differ():
    x = torch.randn(8, 100, generator=torch.Generator().manual_seed(3))
    a = choose_next(x, generator=torch.Generator().manual_seed(7))
    b = choose_next(x, generator=torch.Generator().manual_seed(7))
    c = choose_next(x, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": -0.1},
        {"temperature": float("nan")},
        {"top_k": -1},
        {"top_k": 2.5},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"min_p": -0.1},
        {"min_p": 1.1},
        {"repetition_penalty": 0.0},
        {"max_new_tokens": -1},
    ],
)
def test_bad_options_raise_clear_error(options):
    name = next(iter(options))
    with pytest.raises(GenzooError, match=name):
        check_options(**options)
    if name != "max_new_tokens":
        with pytest.raises(GenzooError, match=name):
            generate(lambda ids, c: (torch.zeros(1, 1, 4), c), [[0]], max_new_tokens=2, **options)


def test_fully_masked_row_is_an_error():
    with pytest.raises(GenzooError, match="masked"):
        choose_next(torch.full((1, 4), NEG))


# ----------------------------------------------------------------------------- stand-in models


class HistoryModel:
    """A deterministic "model" whose next-token logits depend on the whole sequence so far.

    It owns its cache (the sequences seen) as a real model owns its KV cache,
    and checks the step protocol: the whole prompt first, then one token.
    ``logits = randn(V) seeded by hash(sequence)`` (+ ``favour`` on token
    ``(sum of the sequence) % V``): any wrong feeding changes the text.
    """

    def __init__(self, vocab: int = 12, favour: float = 0.0, extra: torch.Tensor | None = None):
        self.vocab, self.favour, self.extra = vocab, favour, extra
        self.calls = 0
        self.batch_sizes: list[int] = []

    def logits_for(self, seq: list[int]) -> torch.Tensor:
        g = torch.Generator().manual_seed(hash(tuple(seq)) % (2**61))
        out = torch.randn(self.vocab, generator=g)
        out[sum(seq) % self.vocab] += self.favour
        if self.extra is not None:
            out = out + self.extra
        return out

    def __call__(self, ids: torch.Tensor, cache):
        self.calls += 1
        assert ids.dtype == torch.long and ids.dim() == 2
        if cache is None:
            cache = [list(r) for r in ids.tolist()]
        else:
            assert ids.shape == (len(cache), 1), "after the prompt, one token per row"
            for seq, (t,) in zip(cache, ids.tolist()):
                seq.append(t)
        self.batch_sizes.append(len(cache))
        last = torch.stack([self.logits_for(seq) for seq in cache])
        # positions before the last get junk: generate must only read the last one
        return torch.cat([torch.full((len(cache), ids.shape[1] - 1, self.vocab), 1e4), last[:, None]], 1), cache


class ScriptModel:
    """Says ``script`` (a list of token ids) from the start, whatever the prompt: next = script[n generated]."""

    def __init__(self, script: list[int], vocab: int):
        self.script, self.vocab = script, vocab

    def __call__(self, ids, cache):
        n = 0 if cache is None else cache + 1
        out = torch.full((ids.shape[0], ids.shape[1], self.vocab), -5.0)
        out[:, -1, self.script[n % len(self.script)]] = 5.0
        return out, n


def reference_greedy(model: HistoryModel, prompt: list[int], n: int, eos: int | None) -> list[int]:
    seq, out = list(prompt), []
    for _ in range(n):
        t = int(model.logits_for(seq).argmax())
        if t == eos:
            break
        out.append(t)
        seq.append(t)
    return out


class CharTokenizer:
    def __init__(self, alphabet: str):
        self.alphabet = alphabet
        self.eos_id = len(alphabet)
        self.vocab_size = len(alphabet) + 1

    def encode(self, s: str) -> list[int]:
        return [self.alphabet.index(c) for c in s]

    def decode(self, ids) -> str:
        return "".join(self.alphabet[i] for i in ids if i < len(self.alphabet))


# ----------------------------------------------------------------------------- generate


def test_greedy_matches_full_recomputation_for_prompts_of_different_lengths():
    model = HistoryModel(vocab=12, favour=0.5)
    prompts = [[1], [2, 3, 4], [5], [6, 7, 8], [9, 9]]
    out = generate(model, prompts, max_new_tokens=15, eos_id=0, temperature=0)
    for p, o in zip(prompts, out):
        ref = reference_greedy(model, p, 15, eos=0)
        assert o.ids == ref
        assert o.stop_reason == ("eos" if len(ref) < 15 else "length")
    assert {o.stop_reason for o in out} == {"eos", "length"}  # both kinds occur in this draw
    assert max(model.batch_sizes) == 2  # equal-length prompts share a batch


def test_stops_per_row_at_eos_and_length():
    # counting model: next = (sum of sequence) % V, strongly
    model = HistoryModel(vocab=10, favour=50.0)
    prompts = [[3], [1, 1], [4, 4, 4, 4]]
    out = generate(model, prompts, max_new_tokens=4, eos_id=[2, 8], temperature=0)
    # [3] -> 3 (sum 6) -> 6 (sum 12) -> 2 = eos
    assert out[0].ids == [3, 6] and out[0].stop_reason == "eos"
    # [1,1] -> 2 = eos at once
    assert out[1].ids == [] and out[1].stop_reason == "eos"
    # [4,4,4,4] -> 6 (22) -> 2? 16%10=6; sum 22 -> 2 = eos
    assert out[2].ids == [6] and out[2].stop_reason == "eos"
    out = generate(HistoryModel(vocab=10, favour=50.0), [[1], [5, 5]], max_new_tokens=3, temperature=0)
    assert [o.stop_reason for o in out] == ["length", "length"] and all(len(o.ids) == 3 for o in out)
    out = generate(model, [[1]], max_new_tokens=0)
    assert out[0].ids == [] and out[0].stop_reason == "length"


def test_stop_string_is_cut_from_text_per_row():
    tok = CharTokenizer(string.ascii_lowercase + " .")
    script = tok.encode("hello world. bye")
    model = ScriptModel(script, tok.vocab_size)
    out = generate(model, [[0], [1, 2, 3]], max_new_tokens=30, stop=["wor", "xyz"], decode=tok.decode,
                   eos_id=tok.eos_id, temperature=0)
    for o in out:
        assert o.text == "hello " and o.stop_reason == "stop"
        assert tok.decode(o.ids) == "hello wor"  # ids run up to the token that completed the stop
    out = generate(model, [[0]], max_new_tokens=30, stop=". ", decode=tok.decode, temperature=0)
    assert out[0].text == "hello world"
    out = generate(model, [[0]], max_new_tokens=5, stop=["zz"], decode=tok.decode, temperature=0)
    assert out[0].text == "hello" and out[0].stop_reason == "length"


def test_stop_string_inside_a_bpe_token():
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tk = tokenizers.Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(["hello world " * 50], trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    ids = tk.encode("hello world hello").ids
    assert len(tk.decode(ids[:1])) > 2  # "hello" is one token: "ll" starts inside it
    model = ScriptModel(ids, tk.get_vocab_size())
    out = generate(model, [[0]], max_new_tokens=10, stop="ll", decode=tk.decode, temperature=0)
    assert out[0].text == "he" and out[0].ids == ids[:1]
    out = generate(model, [[0]], max_new_tokens=10, stop="d h", decode=tk.decode, temperature=0)
    assert out[0].text == "hello worl"


def test_stop_token_sequence_is_cut_from_ids():
    model = ScriptModel([4, 5, 6, 7, 8], vocab=10)
    out = generate(model, [[0], [0, 0]], max_new_tokens=9, stop_token_seqs=[[6, 7]], temperature=0)
    assert all(o.ids == [4, 5] and o.stop_reason == "stop" for o in out)


def test_seeded_generation_reproducible_and_seeds_differ():
    model = HistoryModel(vocab=50)
    prompts = [[1, 2], [3], [4, 5]]

    def run(seed, **kw):
        g = torch.Generator().manual_seed(seed)
        return [o.ids for o in generate(model, prompts, max_new_tokens=20, generator=g, **kw)]

    a, b, c = run(0), run(0), run(1)
    assert a == b and a != c
    assert a[0] != a[2]  # rows of the same length draw differently
    # a row's text does not depend on how rows are grouped into batches
    assert run(0, batch=False) == a
    torch.manual_seed(5)
    d = [o.ids for o in generate(model, prompts, max_new_tokens=20)]
    torch.manual_seed(5)
    assert d == [o.ids for o in generate(model, prompts, max_new_tokens=20)]


def test_hooks_processor_and_streaming():
    model = HistoryModel(vocab=8, favour=2.0)
    seen_lengths = {0: [], 1: []}
    streamed = []

    def ban_three(row, generated, logits):
        assert len(generated) == len(seen_lengths[row])  # called once per step with the ids so far
        seen_lengths[row].append(len(generated))
        return logits.masked_fill(torch.arange(len(logits)) == 3, NEG)

    out = generate(model, [[1], [2, 2]], max_new_tokens=30, generator=torch.Generator().manual_seed(0),
                   logits_processor=ban_three, on_token=lambda r, t: streamed.append((r, t)))
    for r, o in enumerate(out):
        assert 3 not in o.ids and len(o.ids) == 30
        assert [t for rr, t in streamed if rr == r] == o.ids


def test_repetition_penalty_in_the_loop():
    # a model that always prefers token 0, then 1, then 2: the penalty walks down the list
    prefs = torch.tensor([3.0, 2.5, 2.0, 1.6, 1.0, 0.5])

    def step(ids, cache):
        return prefs.expand(ids.shape[0], ids.shape[1], 6).clone(), cache

    out = generate(step, [[5]], max_new_tokens=4, temperature=0, repetition_penalty=2.0)
    assert out[0].ids == [0, 1, 2, 3]  # 3/2=1.5 < 2.5, then 2.5/2 < 2.0, ...
    assert generate(step, [[5]], max_new_tokens=3, temperature=0)[0].ids == [0, 0, 0]
    out = generate(step, [[0]], max_new_tokens=1, temperature=0, repetition_penalty=2.0)
    assert out[0].ids == [1]  # the prompt counts as seen


def test_generate_input_errors():
    model = HistoryModel()
    with pytest.raises(GenzooError, match="empty"):
        generate(model, [[1], []], max_new_tokens=3)
    with pytest.raises(GenzooError, match="decode"):
        generate(model, [[1]], max_new_tokens=3, stop=["x"])
    with pytest.raises(GenzooError, match="stop"):
        generate(model, [[1]], max_new_tokens=3, stop=[""], decode=str)
    assert generate(model, [], max_new_tokens=3) == []
