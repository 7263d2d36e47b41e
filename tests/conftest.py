"""Shared fixtures: a tiny random Llama with a real (tiny) tokenizer and a random sae-lens SAE.

Nothing here downloads anything; the real default model is only used by tests marked `model`.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from openai_server import FakeOpenAI
from steering.llm import LLMClient
from steering.runtime.basis import SteeringBasis
from steering.runtime.engine import SteeringEngine
from steering.runtime.models import ModelRef, SAERef, resolve_preset
from steering.runtime.shared import Runtime

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEXT = (
    "The quick brown fox jumps over the lazy dog. Why is the sky blue? Dogs like bones and walks. "
    "Children ask questions about space, animals and the ocean. Plants need water and sunlight to grow."
)


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TEXT] * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>", unk_token="<|endoftext|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_model(vocab_size: int, layers: int = 4, hidden: int = 64, mlp_bias: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=True,
        mlp_bias=mlp_bias,
    )
    torch.manual_seed(1234)
    return LlamaForCausalLM(cfg).eval()


def build_sae(d_in: int = 64, d_sae: int = 128, layer: int = 2, k: int = 8):
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(99)
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, metadata=SAEMetadata(hook_name=f"model.layers.{layer}")))
    with torch.no_grad():
        sae.W_dec.copy_(torch.randn(d_sae, d_in))
        sae.W_enc.copy_(sae.W_dec.T.clone())
    return sae


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return build_model(len(tiny_tokenizer))


@pytest.fixture(scope="session")
def tiny_sae():
    return build_sae()


@pytest.fixture()
def tiny_engine(tiny_model, tiny_tokenizer, tiny_sae):
    # A strong scale so that steering visibly changes a random model's greedy tokens.
    return SteeringEngine(tiny_model, tiny_tokenizer, SteeringBasis.from_sae(tiny_sae, layer=2, scale=8.0))


@pytest.fixture()
def fake_openai():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture()
def llm_client(fake_openai):
    return LLMClient(base_url=fake_openai.base_url, model="judge-model", api_key="sk-test-secret", timeout=3.0, max_retries=0)


@pytest.fixture()
def tiny_runtime(tiny_model, tiny_tokenizer, tiny_sae):
    engine = SteeringEngine(tiny_model, tiny_tokenizer, SteeringBasis.from_sae(tiny_sae, layer=2, scale=8.0), tiny_sae)
    return Runtime(resolve_preset(None), engine, ModelRef("tiny", "tiny/llama"), SAERef("tiny-sae", "model.layers.2", 2, tiny_sae.cfg.d_sae))
