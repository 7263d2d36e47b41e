"""What `build-sae` is asked to do: `SAEBuildConfig` (its fields are the command's options), kept
apart from the training code so the command line builds its parser without importing torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SAEBuildConfig:
    preset: str = "smollm2-135m"
    layer: int = 15
    d_sae: int = 4096  # ~7x the 576-wide residual stream
    k: int = 64  # TopK: active latents per token (1.6% of d_sae)
    context_size: int = 128
    training_tokens: int = 4_000_000  # a bit more than the corpus: ~1.25 passes over the cache
    train_batch_size_tokens: int = 4096
    lr: float = 5e-4
    # Steps a latent may stay silent before the TopK auxiliary loss starts reviving it. Must be far
    # below the number of training steps, or the revival never starts (sae-lens default: 1000).
    dead_feature_window: int = 50
    # Scale activations to mean norm sqrt(d_in) while training (folded into the weights at the end).
    normalize_activations: str = "expected_average_only_in"
    seed: int = 42
    self_answers: int = 2380  # model answers generated for the corpus (the next 120 seed questions are held out)
    self_answer_tokens: int = 64
    chat_fraction: float = 0.5  # of WordNet glosses and fortunes, wrapped in the chat template
    wordnet_docs: int = 45_000  # sample of the 117,659 glosses (keeps the corpus ~3.5M tokens)
    cache_dtype: str = "bfloat16"  # dtype of the forward pass that fills the activation cache
    out_dir: str = "assets/sae/smollm2-135m-l15-topk"
    work_dir: str = "runs/sae"
    # Export a checkpoint of a run (runs/sae/checkpoints/RUN/N, e.g. one written by Ctrl-C)
    # instead of training, to ship weights from a run cut short.
    from_checkpoint: str = ""
