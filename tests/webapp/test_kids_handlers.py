"""The Kids' Q&A tab's handlers, without a server."""

import builtins

import pytest

from quora_kids.profiles import ProfileCatalog
from webapp import common, kids


def test_app_refuses_paths_without_opening_a_file(monkeypatch, tmp_path):
    """The app's handler, not only the catalog: a path never reaches the filesystem."""
    monkeypatch.setattr(common, "_catalog", ProfileCatalog())
    monkeypatch.setattr(kids, "service_for", lambda entry: pytest.fail("built a service for an unknown name"))
    monkeypatch.setattr(kids, "recent_md", lambda: "")
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(f) or real_open(f, *a, **k))
    for name in ("/etc/passwd", "../../../../etc/hostname", "assets/profiles/kids.json"):
        *_, (steered, plain, notice, answer_id, _) = kids.kids_answer("Why is the sky blue?", name, {})  # a generator
        assert steered == plain == "" and answer_id is None and "no profile with that name" in notice
        assert "passwd" not in notice and "hostname" not in notice
    assert opened == []
    assert kids.profile_download("/etc/passwd", {}) is None and opened == []

