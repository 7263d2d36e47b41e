"""The packed-weight decoder (steering/decode.py) against transformers on the tiny random Llama."""

import pytest
import torch

from steering.runtime.basis import Steer, SteeringBasis
from steering.runtime.decode import PRECISIONS, DecodeSettings, FastDecoder, supports
from steering.runtime.engine import GenerationConfig, SteeringEngine
from steering.runtime.packed import GROUP, int4_error, resolve_precision

PROMPTS = ["Why is the sky blue?", "Dogs like bones and walks. Why?", "Plants?"]  # different lengths: left padding


def engine(model, tok, sae, decode):
    return SteeringEngine(model, tok, SteeringBasis.from_sae(sae, layer=2, scale=8.0), decode=decode)


@pytest.mark.parametrize("penalty", [1.0, 1.1])
def test_full_precision_fast_path_gives_the_reference_tokens_for_padded_steered_batches(tiny_model, tiny_tokenizer, tiny_sae, penalty):
    cfg = GenerationConfig(max_new_tokens=16, repetition_penalty=penalty)
    weights = [{5: 1.0}, None, {9: -0.7, 3: 0.4}]
    ref = engine(tiny_model, tiny_tokenizer, tiny_sae, "reference").generate(PROMPTS, weights, config=cfg)
    fast = engine(tiny_model, tiny_tokenizer, tiny_sae, "float32").generate(PROMPTS, weights, config=cfg)
    assert [g.token_ids for g in fast] == [g.token_ids for g in ref]
    assert [g.finish_reason for g in fast] == [g.finish_reason for g in ref]
    assert ref[0].token_ids != ref[1].token_ids or ref[0].text != ""  # the batch is not trivially empty


def test_fast_path_logits_match_the_reference_logits(tiny_model, tiny_tokenizer, tiny_sae):
    cfg = GenerationConfig(max_new_tokens=6, repetition_penalty=1.0, min_new_tokens=6, return_logits=True)
    ref = engine(tiny_model, tiny_tokenizer, tiny_sae, "reference").generate(PROMPTS[:2], [{5: 1.0}, None], config=cfg)
    fast = engine(tiny_model, tiny_tokenizer, tiny_sae, "float32").generate(PROMPTS[:2], [{5: 1.0}, None], config=cfg)
    for r, f in zip(ref, fast):
        assert f.logits.shape == r.logits.shape
        torch.testing.assert_close(f.logits, r.logits, atol=1e-4, rtol=1e-4)


def test_min_new_tokens_holds_back_eos(tiny_model, tiny_tokenizer, tiny_sae):
    e = engine(tiny_model, tiny_tokenizer, tiny_sae, "float32")
    [g] = e.generate([PROMPTS[0]], config=GenerationConfig(max_new_tokens=20, min_new_tokens=20))
    assert len(g.token_ids) == 20 and g.finish_reason == "length"


@pytest.mark.parametrize("precision", ["int4", "bfloat16"])
def test_low_precision_paths_stay_close_to_full_precision(tiny_model, tiny_tokenizer, tiny_sae, precision):
    cfg = GenerationConfig(max_new_tokens=5, min_new_tokens=5, repetition_penalty=1.0, return_logits=True)
    full = engine(tiny_model, tiny_tokenizer, tiny_sae, "float32").generate(PROMPTS[:1], [{5: 1.0}], config=cfg)[0]
    low = engine(tiny_model, tiny_tokenizer, tiny_sae, precision).generate(PROMPTS[:1], [{5: 1.0}], config=cfg)[0]
    # Same first token (same prompt, no sampled history yet) and logits within a few percent.
    assert low.token_ids[0] == full.token_ids[0]
    first_err = (low.logits[0] - full.logits[0]).abs().max() / full.logits[0].abs().max()
    assert first_err < 0.05


@pytest.mark.parametrize("precision", PRECISIONS)
def test_rows_do_not_steer_each_other(tiny_model, tiny_tokenizer, tiny_sae, precision):
    e = engine(tiny_model, tiny_tokenizer, tiny_sae, precision)
    cfg = GenerationConfig(max_new_tokens=10)
    steered, plain = e.generate([PROMPTS[0]] * 2, [{5: 1.0}, None], config=cfg)
    [alone] = e.generate([PROMPTS[0]], [None], config=cfg)
    assert plain.token_ids == alone.token_ids
    assert steered.token_ids != plain.token_ids


def test_unknown_decode_path_is_a_clear_error(tiny_model, tiny_tokenizer, tiny_sae):
    with pytest.raises(ValueError, match="unknown decode path"):
        engine(tiny_model, tiny_tokenizer, tiny_sae, "fp4")


def test_auto_precision_is_int4_only_for_weights_that_are_4_bit_blocks_already(tiny_tokenizer):
    from conftest import build_model


    model = build_model(len(tiny_tokenizer))
    assert resolve_precision(model, "auto") == "bfloat16"  # random fp32 weights
    with torch.no_grad():  # snap every linear weight to Q4_1-style blocks, as a GGUF conversion does
        for m in model.modules():
            if isinstance(m, torch.nn.Linear) and m.weight.shape[1] % GROUP == 0:
                n, k = m.weight.shape
                b = m.weight.reshape(n, k // GROUP, GROUP)
                lo, hi = b.amin(-1, keepdim=True), b.amax(-1, keepdim=True)
                d = (hi - lo) / 15
                m.weight.copy_((((b - lo) / d).round() * d + lo).reshape(n, k))
    assert int4_error(model.model.layers[0].mlp.down_proj.weight) < 1e-6
    assert resolve_precision(model, "auto") == "int4"


def test_rescoring_makes_the_low_precision_head_exact_for_the_best_tokens(tiny_model, tiny_tokenizer, tiny_sae):
    fast = FastDecoder(tiny_model, "bfloat16")
    h = torch.randn(3, tiny_model.config.hidden_size)
    settings = DecodeSettings(max_new_tokens=1, eos_id=2, pad_id=2, repetition_penalty=1.1)
    seen = torch.zeros(3, tiny_model.config.vocab_size, dtype=torch.bool)
    seen[:, :50] = True
    got = fast.logits(h, settings, seen)
    exact = h @ tiny_model.lm_head.weight.detach().T
    best = settings.penalise(exact, seen).topk(5).indices
    torch.testing.assert_close(got.gather(1, best), exact.gather(1, best), atol=1e-5, rtol=1e-5)
    assert settings.penalise(got, seen).argmax(-1).tolist() == settings.penalise(exact, seen).argmax(-1).tolist()


def test_models_other_than_llama_fall_back_to_the_reference_path(tiny_tokenizer, tiny_sae):
    from conftest import build_model

    biased = build_model(len(tiny_tokenizer), mlp_bias=True)
    assert not supports(biased)
    with pytest.raises(ValueError, match="Llama-style"):
        FastDecoder(biased)
    e = engine(biased, tiny_tokenizer, tiny_sae, "auto")
    assert e.fast is None
    assert e.generate([PROMPTS[0]], config=GenerationConfig(max_new_tokens=4))[0].finish_reason in ("eos", "length")


def test_zero_new_tokens_writes_nothing(tiny_model, tiny_tokenizer, tiny_sae):
    [g] = engine(tiny_model, tiny_tokenizer, tiny_sae, "float32").generate([PROMPTS[0]], config=GenerationConfig(max_new_tokens=0))
    assert g.token_ids == [] and g.text == ""


def test_flights_in_neighbouring_pool_slots_attend_together_with_their_solo_logits(tiny_model, tiny_tokenizer, tiny_sae, monkeypatch):
    import gc

    import torch.nn.functional as F

    e = engine(tiny_model, tiny_tokenizer, tiny_sae, "float32")
    cfg = GenerationConfig(max_new_tokens=6, min_new_tokens=6, return_logits=True)
    asks = [([PROMPTS[0]], [{5: 1.0}]), (PROMPTS[1:], [None, {9: -0.7}]), ([PROMPTS[2]], [None])]
    solo = [e.generate(p, w, config=cfg) for p, w in asks]
    pool = e.fast.pool
    assert pool.free() == pool.slots  # solo requests gave their slots back
    calls, real = [], F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **kw: (calls.append(a[0].shape[0]), real(*a, **kw))[1])
    flights = [e._begin(p, w, [None] * len(p), cfg, None, None) for p, w in asks]  # prompts at different lengths
    assert [f.state.slot for f in flights] == [0, 1, 3] and pool.free() == pool.slots - 4
    calls.clear()
    while not all(f.done for f in flights):
        e.fast.step(list(reversed(flights)))  # any order: they decode in slot order
    layers = len(e.fast.layers)
    assert calls == [4] * layers * 5  # one attention over all 4 rows per layer, every step
    for f, s in zip(flights, solo):
        for got, want in zip(e._end(f, None, None), s):
            assert got.token_ids == want.token_ids
            torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=1e-5)
    del flights, f
    gc.collect()
    assert pool.free() == pool.slots  # the slots come back when the flights are gone
    long = e._begin([PROMPTS[0]], [None], [None], GenerationConfig(max_new_tokens=pool.capacity), None, None)
    assert long.state.slot is None and pool.free() == pool.slots  # too long for the pool: a cache of its own


def _opening(d: int, tokens: int, seed: int = 0) -> Steer:
    g = torch.Generator().manual_seed(seed)
    return Steer({5: 0.3}, opening=torch.randn(d, generator=g), opening_tokens=tokens)


def test_an_opening_vector_gives_the_reference_tokens_and_logits_on_the_fast_path(tiny_model, tiny_tokenizer, tiny_sae):
    d = tiny_model.config.hidden_size
    cfg = GenerationConfig(max_new_tokens=10, min_new_tokens=10, repetition_penalty=1.1, return_logits=True)
    weights = [_opening(d, 3), None, Steer(opening=torch.randn(d, generator=torch.Generator().manual_seed(1)), opening_tokens=1)]
    ref = engine(tiny_model, tiny_tokenizer, tiny_sae, "reference").generate(PROMPTS, weights, config=cfg)
    fast = engine(tiny_model, tiny_tokenizer, tiny_sae, "float32").generate(PROMPTS, weights, config=cfg)
    assert [g.token_ids for g in fast] == [g.token_ids for g in ref]
    for r, f in zip(ref, fast):
        torch.testing.assert_close(f.logits, r.logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("decode", ["reference", "float32"])
def test_an_opening_vector_steers_only_the_prompts_last_position_and_the_first_answer_tokens(tiny_model, tiny_tokenizer, tiny_sae, decode):
    """opening_tokens = k: the prompt run and the passes over the first k answer tokens are
    steered with it, so the logits of answer tokens 0..k agree between k and any longer opening,
    and differ at token k+1; a zero opening vector is plain steering."""
    d = tiny_model.config.hidden_size
    e = engine(tiny_model, tiny_tokenizer, tiny_sae, decode)
    cfg = GenerationConfig(max_new_tokens=6, min_new_tokens=6, repetition_penalty=1.0, return_logits=True)
    vec = _opening(d, 0, seed=3).opening
    short, long_ = e.generate([PROMPTS[0]] * 2, [Steer({5: 0.3}, opening=vec, opening_tokens=1), Steer({5: 0.3}, opening=vec, opening_tokens=4)], config=cfg)
    torch.testing.assert_close(short.logits[:2], long_.logits[:2], atol=1e-4, rtol=1e-4)
    assert short.token_ids[:2] == long_.token_ids[:2]
    assert (short.logits[2] - long_.logits[2]).abs().max() > 1e-2
    [plain, zero] = e.generate([PROMPTS[0]] * 2, [Steer({5: 0.3}), Steer({5: 0.3}, opening=vec * 0, opening_tokens=4)], config=cfg)
    assert zero.token_ids == plain.token_ids
    assert (plain.logits[0] - short.logits[0]).abs().max() > 1e-2  # the prompt's last position was steered
