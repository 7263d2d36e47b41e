"""Where the repository's shipped files live: the one place that knows the assets/ layout."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
SAE_DIR = ASSETS / "sae"  # local SAEs (sae-lens inference folders)
INDEX_DIR = ASSETS / "index"  # feature indexes of local SAEs, one folder per SAE
PROFILES_DIR = ASSETS / "profiles"  # curated steering profiles
QUESTIONS_DIR = ASSETS / "questions"
SAFETY_DIR = ASSETS / "safety"
JUDGE_DIR = ASSETS / "judge"
