"""`calibrate`: measure a local SAE's steering scale and record what steering at a few weights
does with it (the examples in the model card)."""

from __future__ import annotations

from ..metrics import perplexities
from ..runtime.basis import DEFAULT_SCALE_FACTOR, measure_calibration, save_calibration
from ..runtime.engine import GenerationConfig, SteeringEngine
from ..runtime.models import ModelPreset, index_dir
from ..runtime.shared import get_runtime
from .index import FeatureIndex

EXAMPLE_TOPICS = ("dogs and puppies", "cooking and food", "the ocean")
EXAMPLE_WEIGHTS = [0.0, 0.3, 0.6, 1.0]


def calibration_examples(engine: SteeringEngine, index: FeatureIndex, prompt: str, scale: float,
                         progress=print) -> list[dict]:
    """For each example topic, its best latent at EXAMPLE_WEIGHTS measured in `scale` units (the
    engine's own basis is left alone), with each answer's perplexity."""
    examples = []
    ratio = scale / engine.basis.scale
    for topic in EXAMPLE_TOPICS:
        hit = index.search(topic, k=1)[0]
        ws = EXAMPLE_WEIGHTS
        gens = engine.generate([prompt] * len(ws), [{hit.index: w * ratio} for w in ws], config=GenerationConfig(max_new_tokens=48))
        ppl = perplexities(engine, [prompt] * len(ws), [g.text for g in gens])
        examples.append({"index": hit.index, "label": hit.label, "topic": topic, "prompt": prompt,
                         "outputs": [[w, g.text, p] for w, g, p in zip(ws, gens, ppl)]})
        for w, g, p in zip(ws, gens, ppl):
            progress(f"[{hit.index} w={w} ppl={p:.1f}] {g.text[:160]!r}")
    return examples


def calibrate_preset(preset: ModelPreset, factor: float | None, prompt: str, progress=print) -> dict:
    """Measure the scale (factor x the median residual norm), add the examples, write it once."""
    engine = get_runtime(preset.id).engine
    calib = measure_calibration(engine.model, engine.tokenizer, preset.sae.layer, factor or DEFAULT_SCALE_FACTOR)
    calib["examples"] = calibration_examples(engine, FeatureIndex.load(index_dir(preset)), prompt, calib["scale"], progress)
    save_calibration(preset, calib)
    return calib
