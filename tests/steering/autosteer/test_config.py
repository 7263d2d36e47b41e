"""AutoSteerConfig: what a run may be asked to do."""

import pytest

from steering.autosteer.config import AutoSteerConfig


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"behavior": "  "}, "describe a behaviour"),
        ({"behavior": "x" * 501}, "too long"),
        ({"prompts": ["", " "]}, "training prompt"),
        ({"epochs": 0}, "epochs"),
        ({"features": 99}, "features"),
        ({"screen": 0}, "screen"),
    ],
)
def test_config_validation(kw, msg):
    base = dict(behavior="Behave like a dog", prompts=["Hi"])
    base.update(kw)
    with pytest.raises(ValueError, match=msg):
        AutoSteerConfig(**base)


def test_heldout_excludes_training_prompts():
    cfg = AutoSteerConfig(behavior="b", prompts=["Why do we have seasons?"])
    assert "Why do we have seasons?" not in cfg.heldout and cfg.heldout

