import pytest
import torch
import torch.nn.functional as F

from steering.runtime.decode import FastDecoder
from steering.runtime.headscore import token_nll


def _exact(fast, hidden, targets):
    return F.cross_entropy(hidden @ fast.head_exact.T, targets, reduction="none")


@pytest.mark.parametrize("precision,sharpness", [("int4", 1.0), ("bfloat16", 1.0), ("int4", 12.0)])
def test_low_precision_head_scores_tokens_as_the_exact_fp32_head_does(tiny_model, precision, sharpness):
    fast = FastDecoder(tiny_model, precision)
    torch.manual_seed(0)
    ids = torch.randint(0, tiny_model.config.vocab_size, (3, 20))
    hidden = fast.hidden_states(ids, torch.ones_like(ids)).reshape(-1, tiny_model.config.hidden_size)
    hidden = hidden * sharpness  # 12: the best token holds most of the mass (counting it twice would show)
    logits = hidden @ fast.head_exact.T
    # Every kind of target: the model's best token (always a candidate), a likely one, an unlikely one.
    targets = torch.stack([logits.argmax(-1), logits.topk(3, dim=-1).indices[:, 2], logits.argmin(-1)], dim=1).reshape(-1)
    hidden = hidden.repeat_interleave(3, dim=0)
    want, got = _exact(fast, hidden, targets), token_nll(fast, hidden, targets)
    assert torch.allclose(got, want, atol=0.02, rtol=0.01)
    assert not torch.allclose(want[0::3], want[2::3])  # the targets really differ in likelihood


def test_float32_head_is_exact_cross_entropy(tiny_model):
    fast = FastDecoder(tiny_model, "float32")
    hidden = torch.randn(7, tiny_model.config.hidden_size)
    targets = torch.randint(0, tiny_model.config.vocab_size, (7,))
    assert torch.equal(token_nll(fast, hidden, targets), _exact(fast, hidden, targets))
