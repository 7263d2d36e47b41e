"""SAE quality on the tiny model with SAEs whose answers are known: one that reconstructs exactly
and one that reconstructs nothing; and the model card written from the figures."""

from types import SimpleNamespace

import pytest
import torch

from steering.sae.evaluate import evaluate_sae, heldout_texts
from steering.sae.model_card import model_card

TEXTS = ["Why is the sky blue? The sky is blue because of light.", "Dogs like bones and walks in the park.",
         "Plants need water and sunlight to grow."]


class ExactSAE:
    """Splits x into its positive and negative parts: decode(encode(x)) == x."""

    def __init__(self, d: int):
        self.d, self.cfg = d, SimpleNamespace(d_sae=2 * d)

    def encode(self, x):
        return torch.cat([x.clamp_min(0), (-x).clamp_min(0)], dim=-1)

    def decode(self, a):
        return a[..., : self.d] - a[..., self.d :]


class NothingSAE:
    cfg = SimpleNamespace(d_sae=8)

    def encode(self, x):
        return torch.zeros(*x.shape[:-1], 8)

    def decode(self, a):
        return torch.zeros(*a.shape[:-1], 64)


def test_an_exact_sae_explains_everything_and_recovers_the_whole_loss(tiny_model, tiny_tokenizer):
    q = evaluate_sae(tiny_model, tiny_tokenizer, ExactSAE(64), 2, TEXTS)
    assert q.tokens > 20
    assert q.variance_explained == pytest.approx(1.0, abs=1e-5)
    assert q.ce_spliced == pytest.approx(q.ce_clean, abs=1e-4) and q.ce_recovered == pytest.approx(1.0, abs=1e-3)
    assert q.ce_zero_ablated != pytest.approx(q.ce_clean)  # zeroing the layer changes the loss
    assert 0 < q.l0 <= 64 and q.dead_fraction < 0.5


def test_an_sae_that_reconstructs_nothing_recovers_nothing(tiny_model, tiny_tokenizer):
    q = evaluate_sae(tiny_model, tiny_tokenizer, NothingSAE(), 2, TEXTS)
    assert q.ce_spliced == pytest.approx(q.ce_zero_ablated) and q.ce_recovered == pytest.approx(0.0, abs=1e-6)
    assert q.variance_explained <= 0.0 and q.l0 == 0.0 and q.dead_fraction == 1.0
    assert set(q.to_dict()) == {"tokens", "variance_explained", "l0", "dead_fraction", "ce_clean", "ce_spliced", "ce_zero_ablated", "ce_recovered"}


def test_heldout_texts_are_the_models_answers_in_the_chat_template(tiny_engine):
    texts = heldout_texts(tiny_engine, tiny_engine.tokenizer, ["Why?", "How?"], max_new_tokens=4)
    assert len(texts) == 2 and texts[0].startswith("<|im_start|>user\nWhy?") and "<|im_start|>assistant" in texts[0]


RECIPE = {"build_config": {"layer": 15, "seed": 42, "training_tokens": 4000, "context_size": 128, "d_sae": 4096, "k": 64},
          "trained_tokens": 4000, "command": "python -m steering build-sae", "corpus": [{"source": "wordnet", "documents": 10, "characters": 999}],
          "corpus_tokens": 1234, "seconds": {"activation_cache": 600, "training": 1200}}
QUALITY = {"tokens": 5000, "questions": 120, "variance_explained": 0.8, "l0": 64.0, "dead_fraction": 0.02, "dead_fraction_index": 0.01,
           "ce_clean": 1.0, "ce_spliced": 1.1, "ce_zero_ablated": 3.0, "ce_recovered": 0.95}


def test_model_card_reports_the_figures_and_only_the_missed_targets():
    card = model_card("my-sae", RECIPE, QUALITY, None)
    assert card.startswith("# SAE `my-sae`") and "| CE loss recovered | 0.950 | >= 0.8 |" in card
    assert "Time: activation cache 10 min, training 20 min." in card and "Targets missed" not in card
    assert "Steering strength calibration" not in card and "checkpoint at that point" not in card
    worse = model_card("my-sae", {**RECIPE, "trained_tokens": 1000}, {**QUALITY, "ce_recovered": 0.5, "dead_fraction_index": 0.2}, None)
    assert "**Targets missed: dead latents, CE loss recovered.**" in worse and "checkpoint at that point" in worse


def test_model_card_lists_the_calibration_examples():
    calib = {"layer": 15, "median_residual_norm": 170.0, "factor": 1.0, "scale": 170.0,
             "examples": [{"index": 7, "label": "dogs", "prompt": "Hi", "outputs": [[0.0, "Hello.", 3.2], [0.6, "Woof!", 9.9]]}]}
    card = model_card("my-sae", RECIPE, QUALITY, calib)
    assert "Scale s = 1.0 x that = 170.0" in card and "Latent 7 (dogs), prompt \"Hi\":" in card
    assert "- w = 0.6: (perplexity 9.9) 'Woof!'" in card
