"""What both tabs share: the shared runtime, the curated profile catalogue, private profile
downloads, and small HTML helpers."""

from __future__ import annotations

import html
import os
import secrets
from pathlib import Path

import gradio as gr

from quora_kids.profiles import ProfileCatalog
from steering.artefacts.profile import SteeringProfile
from steering.paths import PROFILES_DIR, ROOT
from steering.runtime.shared import Runtime, get_runtime

# Downloads of learned profiles: one unguessable folder per run, never listed for anyone.
USER_PROFILES = Path(os.environ.get("STEERING_PROFILES_DIR", ROOT / "profiles"))
MAX_TEXT = 2000
_catalog: ProfileCatalog | None = None


def runtime() -> Runtime:
    return get_runtime()


def catalog() -> ProfileCatalog:
    """The curated profiles (read once from assets/profiles); learned ones live in each session."""
    global _catalog
    if _catalog is None:
        _catalog = ProfileCatalog(PROFILES_DIR)
    return _catalog


def profile_choices(learned: dict | None = None) -> list[tuple[str, str]]:
    """(name and one-line description, profile name) for the kids' dropdown: the curated profiles,
    the unsteered model, and the profiles THIS session learned."""
    return catalog().choices(learned)


def default_profile_choice() -> str:
    return catalog().default()


def kids_profiles(learned, current=None):
    """(dropdown update, the list as JSON) for this session; keeps the current pick if it still exists."""
    entries = catalog().entries(learned)
    names = [e.name for e in entries]
    value = current if current in names else default_profile_choice()
    return gr.update(choices=[(e.label, e.name) for e in entries], value=value), [e.to_dict() for e in entries]


def private_profile_file(profile: SteeringProfile) -> Path:
    """A download copy of a learned profile in a fresh unguessable folder (listed nowhere)."""
    folder = USER_PROFILES / "sessions" / secrets.token_hex(12)
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in profile.name)[:60] or "profile"
    return profile.save(folder / f"{safe}.json")


def progress_html(done: int, total: int, text: str) -> str:
    pct = 0 if total == 0 else int(100 * done / total)
    return (
        f'<div class="progress-wrap"><div class="progress-bar" style="width:{pct}%"></div></div>'
        f"<p>{html.escape(text)}</p>"
    )


def md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return html.escape(text).replace("|", "\\|").replace("\n", " ")
