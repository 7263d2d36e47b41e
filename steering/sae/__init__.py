"""Building and grading the SAE: activations, the training corpus, training, evaluation,
calibration examples, and the feature index (evidence and labels per latent)."""
