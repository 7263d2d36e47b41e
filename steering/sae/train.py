"""Train the default model's SAE offline with sae-lens: corpus -> tokens -> activations -> TopK SAE.

`python -m steering build-sae` runs every step; each step's output is cached under --work-dir so an
interrupted build continues. The exact arguments are written next to the weights.

On a CPU the language model's forward pass is the cost (about 500 tokens/s for all 30 layers of
SmolLM2-135M on 2 cores), so the residual stream is computed once, only up to the SAE's layer and in
bfloat16 (about 2,200 tokens/s), and stored as a float16 activation cache in sae-lens' format;
sae-lens' LanguageModelSAETrainingRunner then trains from that cache (`use_cached_activations`),
for as many passes over it as `training_tokens` asks.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from ..runtime.engine import GenerationConfig, SteeringEngine
from ..runtime.loading import load_model
from ..runtime.models import resolve_preset
from .activation_cache import cache_activations, cache_key, token_dataset
from .activations import special_ids
from .build_config import SAEBuildConfig
from .corpus import STYLE_PROMPTS, build_texts, seed_questions

log = logging.getLogger(__name__)




def generate_self_answers(cfg: SAEBuildConfig, path: Path, progress=True) -> list[dict]:
    """The model's own answers to seed questions under varied system prompts (cached as JSONL)."""
    done = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    if len(done) >= cfg.self_answers:
        return done[: cfg.self_answers]
    model, tok = load_model(resolve_preset(cfg.preset))
    engine = SteeringEngine(model, tok, basis=None)
    rng = random.Random(cfg.seed)
    questions = seed_questions(cfg.seed)[: cfg.self_answers]
    batch = 48
    gen = GenerationConfig(max_new_tokens=cfg.self_answer_tokens, temperature=0.8, seed=cfg.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh, tqdm(total=len(questions), initial=len(done), desc="self-answers", disable=not progress) as bar:
        for start in range(len(done), len(questions), batch):
            qs = questions[start : start + batch]
            systems = [rng.choice(STYLE_PROMPTS) for _ in qs]
            outs = engine.generate(qs, system=systems, config=gen)
            for q, s, g in zip(qs, systems, outs):
                rec = {"question": q, "system": s, "answer": g.text}
                fh.write(json.dumps(rec) + "\n")
                done.append(rec)
            fh.flush()
            bar.update(len(qs))
    return done


def build_sae(cfg: SAEBuildConfig, progress: bool = True) -> Path:
    """Run every step and save a sae-lens inference folder at cfg.out_dir."""
    torch.manual_seed(cfg.seed)
    work = Path(cfg.work_dir)
    answers = generate_self_answers(cfg, work / "self_answers.jsonl", progress)
    preset = resolve_preset(cfg.preset)
    # One copy of the model, in the cache's dtype: it fills the activation cache, and afterwards the
    # trainer only reads the tokenizer through it (training runs from the cache).
    model, tok = load_model(preset)
    model.to(getattr(torch, cfg.cache_dtype))
    texts, stats = build_texts(tok, cfg.seed, answers, chat_fraction=cfg.chat_fraction, wordnet_docs=cfg.wordnet_docs)
    ds = token_dataset(tok, texts, cfg.context_size)
    corpus_tokens = len(ds) * cfg.context_size
    log.info("corpus: %s rows, %s tokens; %s", len(ds), corpus_tokens, stats)
    if cfg.from_checkpoint:
        return _export_checkpoint(Path(cfg.from_checkpoint), cfg, stats, corpus_tokens)
    # sae-lens hook names are module paths of the wrapped HF model.
    hook = f"model.layers.{cfg.layer}"
    t0 = time.perf_counter()
    cache = cache_activations(
        model, ds, cfg.layer, hook, work / "activations" / cache_key(cfg, len(ds)), bos_id=tok.bos_token_id, progress=progress
    )
    cache_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    sae = train_from_cache(cfg, model, tok, ds, cache, preset.hub_id, progress)
    seconds = {"activation_cache": round(cache_seconds, 1), "training": round(time.perf_counter() - t1, 1)}
    return _save(sae, cfg, stats, corpus_tokens, seconds, cfg.training_tokens)


def train_from_cache(cfg: SAEBuildConfig, model, tokenizer, dataset, cache: Path, model_name: str, progress: bool = True):
    """sae-lens' LanguageModelSAETrainingRunner over an activation cache; returns the trained SAE."""
    # local: importing sae-lens takes ~6 s
    from sae_lens import LanguageModelSAETrainingRunner
    from sae_lens.load_model import HookedProxyLM

    hook = f"model.layers.{cfg.layer}"
    proxy = HookedProxyLM(model, tokenizer, hook_names=[hook])  # supplies the tokenizer (special tokens)
    runner_cfg = _runner_config(cfg, model.config.hidden_size, hook, len(dataset), cache, model_name, progress)
    runner = LanguageModelSAETrainingRunner(runner_cfg, override_dataset=dataset, override_model=proxy)
    if cfg.normalize_activations in ("none", "expected_average_only_in"):
        with torch.no_grad():
            runner.sae.b_dec.copy_(_mean_init(cache, hook, tokenizer, cfg.normalize_activations != "none"))
    return runner.run()


def _runner_config(cfg: SAEBuildConfig, d_in: int, hook: str, n_rows: int, cache: Path, model_name: str, progress: bool):
    """sae-lens' training configuration: a TopK SAE trained from the activation cache on CPU."""
    from sae_lens import LanguageModelSAERunnerConfig, LoggingConfig  # local: importing sae-lens takes ~6 s
    from sae_lens.saes.topk_sae import TopKTrainingSAEConfig

    total_steps = max(1, cfg.training_tokens // cfg.train_batch_size_tokens)
    return LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(
            d_in=d_in,
            d_sae=cfg.d_sae,
            k=cfg.k,
            normalize_activations=cfg.normalize_activations,
            dtype="float32",
            device="cpu",
        ),
        model_name=model_name,
        model_class_name="AutoModelForCausalLM",
        hook_name=hook,
        dataset_path="local",
        is_dataset_tokenized=True,
        streaming=False,
        use_cached_activations=True,
        cached_activations_path=str(cache),
        context_size=cfg.context_size,
        prepend_bos=True,
        exclude_special_tokens=True,  # BOS (huge norm), <|im_start|>/<|im_end|>, padding
        training_tokens=cfg.training_tokens,
        train_batch_size_tokens=cfg.train_batch_size_tokens,
        store_batch_size_prompts=min(32, n_rows),
        n_batches_in_buffer=256,  # sae-lens: buffer = this x context_size tokens
        lr=cfg.lr,
        lr_warm_up_steps=max(1, total_steps // 50),
        dead_feature_window=cfg.dead_feature_window,
        feature_sampling_window=max(cfg.dead_feature_window, 100),
        lr_decay_steps=total_steps // 5,
        seed=cfg.seed,
        device="cpu",
        n_eval_batches=4,
        eval_batch_size_prompts=8,
        n_batches_for_norm_estimate=50,
        logger=LoggingConfig(log_to_wandb=False),
        checkpoint_path=str(Path(cfg.work_dir) / "checkpoints"),
        n_checkpoints=4,
        output_path=str(Path(cfg.work_dir) / "final"),
        verbose=progress,
    )


def _mean_init(cache: Path, hook: str, tokenizer, normalized: bool, rows: int = 256) -> torch.Tensor:
    """Initial decoder bias: the mean activation (in the trainer's normalised units).

    sae-lens starts b_dec at zero. SmolLM2's residual stream has a large common offset (mean norm
    ~130 against a typical norm of ~170), so from zero the encoder sees mostly that offset and about
    half the latents (those pointing away from it) never reach the top k and die. Subtracting the
    mean from the start keeps them alive.
    """
    import datasets  # local: importing datasets takes ~1 s

    block = datasets.load_from_disk(str(cache)).with_format("torch")[:rows]
    x = block[hook].float().reshape(-1, block[hook].shape[-1])
    x = x[~torch.isin(block["token_ids"].reshape(-1).long(), special_ids(tokenizer))]
    mean = x.mean(0)
    if normalized:  # same factor as sae-lens' "expected_average_only_in": mean norm -> sqrt(d_in)
        mean = mean * (x.shape[1] ** 0.5) / x.norm(dim=-1).mean()
    return mean


def _export_checkpoint(ckpt: Path, cfg: SAEBuildConfig, stats, corpus_tokens: int) -> Path:
    """Save a training checkpoint as the inference SAE, folding in its activation scaling."""
    from sae_lens import TrainingSAE  # local: importing sae-lens takes ~6 s

    sae = TrainingSAE.load_from_disk(str(ckpt), "cpu")
    scaler = ckpt / "activation_scaler.json"
    factor = json.loads(scaler.read_text()).get("scaling_factor") if scaler.is_file() else None
    if factor is not None:
        sae.fold_activation_norm_scaling_factor(factor)
    return _save(sae, cfg, stats, corpus_tokens, seconds=None, trained_tokens=int(ckpt.name))


def _save(sae, cfg: SAEBuildConfig, stats, corpus_tokens: int, seconds: dict | None, trained_tokens: int) -> Path:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sae.save_inference_model(str(out))
    args = {k: v for k, v in asdict(cfg).items() if k != "from_checkpoint"}
    recipe = {
        "build_config": asdict(cfg),
        "trained_tokens": trained_tokens,
        "command": "python -m steering build-sae " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in args.items()),
        "corpus": [asdict(s) for s in stats],
        "corpus_tokens": corpus_tokens,
        "seconds": seconds,
        "torch": torch.__version__,
    }
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    return out
