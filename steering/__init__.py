"""One-prompt steering of a language model with sparse-autoencoder features.

Layers (each may import only those listed before it; docs/architecture.md has the picture):
`paths`, `llm` (leaves) -> `runtime/` (presets, engine, decoding, steering basis, shared runtime)
-> `metrics` -> `sae/` (activations, corpus, training, evaluation, feature index)
-> `artefacts/` (profile format, profile <-> runtime, export) -> `autosteer/` (retrieval,
judges, optimisers, the loop) -> `cli/` (thin adapters).
"""
