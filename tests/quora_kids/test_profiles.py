import builtins
import io
import json
import os
from pathlib import Path

import pytest

from quora_kids.profiles import (
    UNSTEERED,
    ProfileCatalog,
    UnknownProfile,
    content_key,
    load_curated,
    remember,
)
from quora_kids.safety import SafetyVerdict
from quora_kids.service import AnswerService
from quora_kids.store import AnswerStore
from steering.artefacts.bind import make_profile
from steering.paths import ROOT

BAD_NAMES = [
    "/etc/passwd", "/etc/hostname", "../../../../etc/hostname", "assets/profiles/kids.json", "./assets/profiles/pirate.json",
    "kids.json", "..", "../kids", str(ROOT / "assets/profiles/kids.json"), "~/.bashrc", "kids/../../etc/passwd", "file:///etc/passwd",
    "C:\\Windows\\win.ini", 42, ["kids"], {"name": "kids"},
]


class OkSafety:
    name = "ok"

    def check(self, text, kind="question"):
        return SafetyVerdict("ok")


@pytest.fixture(scope="module")
def catalog():
    return ProfileCatalog()


@pytest.fixture()
def no_file_access(monkeypatch):
    """Fail the test if anything opens or stats a file while it runs."""
    opened = []

    def spy(name):
        def deny(*a, **k):
            opened.append((name, a[:1]))
            raise AssertionError(f"{name} called with {a[:1]}")
        return deny

    monkeypatch.setattr(builtins, "open", spy("open"))
    monkeypatch.setattr(io, "open", spy("io.open"))
    monkeypatch.setattr(os, "open", spy("os.open"))
    monkeypatch.setattr(os, "stat", spy("os.stat"))
    monkeypatch.setattr(Path, "read_text", spy("Path.read_text"))
    monkeypatch.setattr(Path, "read_bytes", spy("Path.read_bytes"))
    return opened


def test_curated_profiles_have_names_and_one_sentence_descriptions(catalog):
    assert {"kids", "pirate"} <= set(catalog.curated)
    for entry in catalog.curated.values():
        assert entry.title and entry.title != entry.name + ".json" and "/" not in entry.title
        assert entry.description.endswith(".") and entry.description.count(". ") == 0 and len(entry.description) <= 160
    labels = [label for label, _ in catalog.choices()]
    assert not any("assets/" in label or ".json" in label for label in labels)
    names = [name for _, name in catalog.choices()]
    assert names[0] == "kids" and names[-1] == UNSTEERED and set(names) == {*catalog.curated, UNSTEERED}
    assert catalog.default() == "kids"


def test_profile_without_display_fields_still_loads(tmp_path):
    data = json.loads((ROOT / "assets/profiles/kids.json").read_text())
    for k in ("display_name", "description"):
        data.pop(k, None)
    (tmp_path / "old.json").write_text(json.dumps({**data, "name": "old"}))
    (tmp_path / "broken.json").write_text("{not json")
    entries = load_curated(tmp_path)
    assert list(entries) == ["old"]
    assert entries["old"].title == "old" and entries["old"].description == data["behavior"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=[str(n)[:30] for n in BAD_NAMES])
def test_paths_and_unknown_names_are_refused_without_opening_a_file(catalog, no_file_access, name):
    learned, _ = {}, None
    with pytest.raises(UnknownProfile) as err:
        catalog.resolve(name, learned)
    msg = str(err.value)
    assert "no profile with that name" in msg and "kids" in msg
    # Nothing about the server's files: no path, no "exists", no JSON parse error.
    for leak in ("/etc", "passwd", "hostname", "not found", "JSON", "exist", str(ROOT), "assets"):
        assert leak not in msg
    assert no_file_access == []


def test_known_names_resolve_without_opening_a_file(catalog, no_file_access):
    assert catalog.resolve("kids").profile.name == "kids"
    assert catalog.resolve(UNSTEERED).profile is None
    assert catalog.resolve(None).name == "kids"  # no choice: the default
    assert no_file_access == []


def test_two_sessions_see_only_their_own_learned_profiles(catalog, tiny_runtime):
    a, name_a = remember({}, make_profile(tiny_runtime, "behave-like-a-wizard", "Talk like a wizard", {3: 0.5}), 7.2)
    b, name_b = remember({}, make_profile(tiny_runtime, "behave-like-a-robot", "Talk like a robot", {4: 0.5}))
    assert name_a.startswith("my-") and name_a not in catalog.curated
    assert name_a in [n for _, n in catalog.choices(a)] and name_a not in [n for _, n in catalog.choices(b)]
    assert name_b in [n for _, n in catalog.choices(b)] and name_b not in [n for _, n in catalog.choices(a)]
    assert catalog.resolve(name_a, a).profile.behavior == "Talk like a wizard" and catalog.resolve(name_a, a).learned
    with pytest.raises(UnknownProfile) as err:
        catalog.resolve(name_a, b)
    assert "wizard" not in str(err.value)
    with pytest.raises(UnknownProfile):
        catalog.resolve(name_a, None)
    # The same behaviour learned twice in one session gets two names; the list stays JSON data.
    a2, name_a2 = remember(a, make_profile(tiny_runtime, "behave-like-a-wizard", "Talk like a wizard", {3: 0.6}))
    assert name_a2 != name_a and set(a2) == {name_a, name_a2} and set(a) == {name_a}
    json.dumps(a2)
    label = dict((n, lbl) for lbl, n in catalog.choices(a2))[name_a]
    assert "Talk like a wizard" in label and "only you" in label and "7.2" in label


def test_a_learned_profile_with_a_heads_up_says_so_in_the_list(catalog, tiny_runtime):
    weak = make_profile(tiny_runtime, "behave-like-a-dog", "Behave like a dog", {3: 0.5},
                        provenance={"notes": ["heads-up: the model shows little of this behaviour even when told it directly"]})
    state, name = remember({}, weak, 0.9)
    assert "expect a weak effect" in state[name]["description"] and "0.9/10" in state[name]["description"]
    fine, other = remember({}, make_profile(tiny_runtime, "pirate", "Talk like a pirate", {3: 0.5}), 2.4)
    assert "weak" not in fine[other]["description"]


def test_learned_name_cannot_shadow_a_curated_one(catalog, tiny_runtime):
    forged = {"kids": {"profile": make_profile(tiny_runtime, "kids", "evil", {1: 1.0}).to_dict(), "title": "x", "description": "y"}}
    assert catalog.resolve("kids", forged).profile.behavior == catalog.curated["kids"].profile.behavior


def test_cache_key_follows_content_not_name(tiny_runtime):
    base = make_profile(tiny_runtime, "kids", "b", {5: 0.8})
    same_weights_other_name = make_profile(tiny_runtime, "other", "b", {5: 0.8})
    other_weights = make_profile(tiny_runtime, "kids", "b", {5: 0.7})
    prompted = make_profile(tiny_runtime, "kids", "b", {5: 0.8}, mode="prompted_steered", system_prompt="Explain for kids")
    prompted2 = make_profile(tiny_runtime, "kids", "b", {5: 0.8}, mode="prompted_steered", system_prompt="Explain for adults")
    free = make_profile(tiny_runtime, "kids", "b", {5: 0.8}, free_direction=[0.01] * 64, free_share=0.1)
    opening = make_profile(tiny_runtime, "kids", "b", {5: 0.8}, opening_direction=[0.01] * 64, opening_tokens=4)
    opening5 = make_profile(tiny_runtime, "kids", "b", {5: 0.8}, opening_direction=[0.01] * 64, opening_tokens=5)
    keys = [content_key(p) for p in (base, other_weights, prompted, prompted2, free, opening, opening5)]
    assert len(set(keys)) == 7
    assert content_key(base) == content_key(same_weights_other_name)
    assert content_key(base, preset="a") != content_key(base, preset="b")


def test_two_profiles_with_one_name_never_share_cached_answers(tiny_runtime, tmp_path, monkeypatch):
    store = AnswerStore(tmp_path / "a.db")
    first = AnswerService(tiny_runtime, make_profile(tiny_runtime, "kids", "b", {5: 0.8}), OkSafety(), store, max_new_tokens=6)
    second = AnswerService(tiny_runtime, make_profile(tiny_runtime, "kids", "b", {7: -0.9}), OkSafety(), store, max_new_tokens=6)
    assert first.cache_key != second.cache_key
    a = first.answer("Why is the sky blue?")
    calls = []
    real = tiny_runtime.engine.generate
    monkeypatch.setattr(tiny_runtime.engine, "generate", lambda *p, **k: calls.append(1) or real(*p, **k))
    b = second.answer("Why is the sky blue?")
    assert not b.cached and calls, "a different profile with the same name was served from the cache"
    # The same content under another name IS the same answer.
    twin = AnswerService(tiny_runtime, make_profile(tiny_runtime, "renamed", "b", {5: 0.8}), OkSafety(), store, max_new_tokens=6)
    c = twin.answer("why is the sky blue")
    assert c.cached and c.answer_id == a.answer_id

