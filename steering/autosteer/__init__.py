"""Auto-steering: one line of behaviour -> candidate features (retrieval) -> screening -> epochs of
generate / judge / optimise -> held-out check -> a profile."""
