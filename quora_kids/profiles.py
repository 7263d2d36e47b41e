"""Steering profiles by name, never by path.

The site answers with a profile picked by NAME from two lists: the curated profiles shipped in
assets/profiles/ (read once, from a directory the server controls) and the profiles one browser
session learned with auto-steer (kept in that session's state, never shown to anyone else).
Resolving a name is a dictionary lookup: an unknown name (a path, "..", anything else) is an
`UnknownProfile` error whose message names only the profiles the caller may use, and no file is
opened for it.

A curated profile file may carry two optional display fields next to the schema's fields:
`display_name` (a short name for parents) and `description` (one sentence). Older files without
them still load: the display name falls back to the profile's `name`, the description to its
`behavior`.

Answers are cached by a profile's CONTENT (`content_key`: model, SAE, scale, weights, free
direction, answering mode and system prompt), never by its name: two different profiles that
share a name never share answers, and the same weights under two names do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from steering.artefacts.profile import ProfileError, SteeringProfile, has_heads_up
from steering.paths import PROFILES_DIR

log = logging.getLogger(__name__)

CURATED_DIR = PROFILES_DIR
# The behaviour the kids' site is about: the default profile's, and the unsteered one's label.
KIDS_BEHAVIOUR = "Explain things in a way that children can understand"
UNSTEERED = "(unsteered)"
MAX_LEARNED = 20  # per session; the oldest is forgotten first


class UnknownProfile(ValueError):
    """A profile name that is neither curated nor learned by this session."""


@dataclass(frozen=True)
class ProfileEntry:
    name: str  # what the API takes
    title: str
    description: str
    profile: SteeringProfile | None  # None: the unsteered model
    learned: bool = False

    @property
    def label(self) -> str:
        return f"{self.title} — {self.description}" if self.description else self.title

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "description": self.description, "learned": self.learned}


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def load_curated(directory: str | Path = CURATED_DIR) -> dict[str, ProfileEntry]:
    """Every valid profile in `directory`, keyed by its `name` field (first file wins on a clash)."""
    entries: dict[str, ProfileEntry] = {}
    for path in sorted(Path(directory).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            profile = SteeringProfile.from_dict(data)
        except (OSError, ValueError) as exc:  # ProfileError and JSONDecodeError are ValueErrors
            log.warning("skipping curated profile %s: %s", path.name, exc)
            continue
        if profile.name in entries or profile.name == UNSTEERED:
            continue
        entries[profile.name] = ProfileEntry(
            profile.name,
            _one_line(data.get("display_name") or profile.name, 60),
            _one_line(data.get("description") or profile.behavior),
            profile,
        )
    return entries


def unsteered_entry() -> ProfileEntry:
    return ProfileEntry(UNSTEERED, "No steering", "both answers come from the plain model, for comparison.", None)


def learned_entry(name: str, data: Mapping[str, Any]) -> ProfileEntry:
    profile = SteeringProfile.from_dict(dict(data["profile"]))
    return ProfileEntry(name, _one_line(data.get("title") or profile.behavior, 60), _one_line(data.get("description", "")), profile, learned=True)


def remember(learned: Mapping[str, Any] | None, profile: SteeringProfile, score: float | None = None) -> tuple[dict, str]:
    """A copy of a session's learned-profile state with `profile` added; returns (state, its name).

    The state is plain JSON-able data (a gr.State value): name -> {"profile", "title", "description"}.
    Names start with "my-" so they never collide with a curated name."""
    state = dict(learned or {})
    base = "my-" + "".join(c if c.isalnum() else "-" for c in profile.name.lower()).strip("-")[:40]
    name, n = base, 2
    while name in state:
        name, n = f"{base}-{n}", n + 1
    when = time.strftime("%H:%M")
    scored = f", held-out score {score:.1f}/10" if score is not None else ""
    weak = has_heads_up(profile.provenance.get("notes"))
    state[name] = {
        "profile": profile.to_dict(),
        "title": f"Mine: {_one_line(profile.behavior, 48)}",
        "description": f"learned in this browser session at {when}{scored}"
                       f"{' (expect a weak effect: the model barely showed this behaviour even when told it)' if weak else ''}"
                       "; only you can see it.",
    }
    while len(state) > MAX_LEARNED:
        state.pop(next(iter(state)))
    return state, name


class ProfileCatalog:
    """Curated profiles (loaded once) plus a session's learned ones, looked up by name only."""

    def __init__(self, directory: str | Path = CURATED_DIR):
        self.curated = load_curated(directory)
        self._lock = threading.Lock()

    def entries(self, learned: Mapping[str, Any] | None = None) -> list[ProfileEntry]:
        # The default (kids) first, then the other curated ones, the unsteered model, this session's own.
        out = [*sorted(self.curated.values(), key=lambda e: e.name != self.default()), unsteered_entry()]
        for name, data in (learned or {}).items():
            try:
                out.append(learned_entry(name, data))
            except (KeyError, TypeError, ValueError):
                continue
        return out

    def choices(self, learned: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
        """(label shown, name passed) pairs for a dropdown."""
        return [(e.label, e.name) for e in self.entries(learned)]

    def default(self) -> str:
        return "kids" if "kids" in self.curated else UNSTEERED

    def resolve(self, name: Any, learned: Mapping[str, Any] | None = None) -> ProfileEntry:
        """The entry called `name`, or UnknownProfile. Never touches the filesystem."""
        if name is None or name == "":
            name = self.default()
        if isinstance(name, str):
            if name == UNSTEERED:
                return unsteered_entry()
            if name in self.curated:
                return self.curated[name]
            if learned and name in learned:
                try:
                    return learned_entry(name, learned[name])
                except (KeyError, TypeError, ValueError) as exc:
                    raise UnknownProfile("That learned profile is damaged; run auto-steer again.") from exc
        # The titles are what a visitor sees in the dropdown; the names are what the API takes.
        names = ", ".join(f"{e.title} ({e.name!r})" for e in self.entries(learned))
        raise UnknownProfile(f"There is no profile with that name. Choose one of: {names}.")


def content_key(profile: SteeringProfile | None, **settings: Any) -> str:
    """A hash of what decides an answer: model, SAE, scale, weights, free direction, mode and
    system prompt (plus any generation `settings`); None is the unsteered model."""
    if profile is None:
        body: dict[str, Any] = {"unsteered": True}
    else:
        body = {
            "model": [profile.model.preset, profile.model.hub_id, profile.model.revision],
            "sae": [profile.sae.id, profile.sae.layer, profile.sae.d_sae],
            "scale": repr(float(profile.scale)),
            "weights": sorted((int(i), repr(float(w))) for i, w in profile.weights().items()),
            "free": None if profile.free_direction is None else [repr(float(x)) for x in profile.free_direction],
            "opening": None if profile.opening_direction is None else [profile.opening_tokens] + [repr(float(x)) for x in profile.opening_direction],
            "mode": profile.mode,
            "system": profile.system_prompt if profile.mode == "prompted_steered" else "",
        }
    body["settings"] = {k: settings[k] for k in sorted(settings)}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


__all__ = ["CURATED_DIR", "ProfileCatalog", "ProfileEntry", "ProfileError", "UNSTEERED", "UnknownProfile", "content_key", "load_curated", "remember"]
