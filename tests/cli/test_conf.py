"""The shipped configs: every key names a real argument, and every default lives in one place
(the YAML presets, not the constructors as well)."""

from __future__ import annotations

import inspect

import pytest
from conftest import make_config
from hydra.utils import get_object
from omegaconf import OmegaConf

from ngram.estimate import check_params
from seqlm.conf import CONF_DIR, choices
from seqlm.validation import parameters, required

PRESETS = [(g, n) for g in ("model", "data") for n in choices(g)]


@pytest.mark.parametrize("group, name", PRESETS, ids=[f"{g}={n}" for g, n in PRESETS])
def test_every_preset_key_is_an_argument_without_a_second_default(group, name):
    node = OmegaConf.to_container(make_config("train", [f"{group}={name}"])[group])
    node.pop("_partial_", None)
    target_name = node.pop("_target_")
    target = get_object(target_name)
    params = inspect.signature(target).parameters
    if target_name.startswith("ngram."):  # the standalone ngram library (kn2 .. kn5, ngram)
        assert isinstance(node.pop("write_arpa"), bool)  # seqlm's own (train_ngram), not fit's
        named = set(params) - {"ids", "itos", "params"}
        extra = set(node) - named
        check_params(node.get("smoothing", "modified_kn"), dict.fromkeys(extra))
        assert extra <= {"k", "discount", "discount_fallback", "backoff"}, extra
        return
    named = set(parameters(target))  # a network's Options fields, else the keyword arguments
    corpus_options = set(node) - named  # LMData passes the rest to its corpus
    if group == "model":
        assert not corpus_options, f"{name}: {corpus_options} are not arguments"
    needed = set(required(target))
    assert set(node) & named <= needed, (
        f"{target.__name__}: {(set(node) & named) - needed} have a default of their own "
        f"besides {group}/{name}.yaml"
    )
    assert needed <= set(node), f"{name}.yaml lacks {needed - set(node)}"


def test_presets_inherit_their_base_instead_of_repeating_it():
    base = OmegaConf.load(CONF_DIR / "model" / "rnn.yaml")
    for name in ("lstm", "gru", "deep_rnn", "mogrifier", "mingru", "minlstm"):
        own = OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")
        assert list(own.defaults) == ["rnn", "_self_"]
        repeated = set(own) - {"defaults"}
        assert len(repeated) == 1, f"{name}.yaml repeats {repeated}"  # its one difference
        composed = make_config("train", [f"model={name}"]).model
        assert set(composed) == set(base)
    for name in choices("data"):
        assert list(OmegaConf.load(CONF_DIR / "data" / f"{name}.yaml").defaults)[0] in (
            "_base",
            "agreement",
        )
    assert "_base" not in choices("data")  # a base is not a choice
