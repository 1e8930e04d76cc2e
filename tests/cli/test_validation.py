"""One place decides each option's rule (seqlm.validation, a network's Options): the command
line before anything runs, the constructor, and train's check before the data is read refuse
the same values with the same line, and pass the same values."""

from __future__ import annotations

import pytest
import yaml
from conftest import make_config
from omegaconf import OmegaConf

from seqlm.build import build, check_node
from seqlm.cli.overrides import checked
from seqlm.errors import SeqlmError
from seqlm.options import CellOptions, RecurrentOptions
from seqlm.validation import type_problem

BAD = [
    (["model.num_layers=0"], "model.num_layers=0 must be >= 1"),
    (["model.hidden_size=0"], "model.hidden_size=0 must be >= 1"),
    (["model.layer_dropout=1.0"], "model.layer_dropout=1.0 must be in [0, 1)"),
    (["model.hidden_size=abc"], "model.hidden_size='abc': expected an integer"),
    (["model.tie_weights=1"], "model.tie_weights=1: expected true or false"),
    (["model.num_layers=true"], "model.num_layers=True: expected an integer"),
    (["model.cell=lstmm"], "model.cell='lstmm' is not one of rnn, lstm, gru"),
    (["model.hidden_sizes=[10,20]"], "model.hidden_sizes=[10, 20] has 2 sizes for"),
    (["model=mingru", "model.wdrop=0.5"], "model.cell=mingru has no hidden-to-hidden matrix"),
    (["model.tie_weights=true", "model.emb_size=10"], "model.tie_weights=true needs"),
    (["model.softmax=adaptive", "model.cutoffs=[50,20]"], "must be strictly increasing"),
    (["model=birnn", "model.out_dropout=-0.1"], "model.out_dropout=-0.1 must be in [0, 1)"),
    (["model=birnn", "model.mogrify_rank=0"], "model.mogrify_rank=0 must be null or >= 1"),
]


def _refusal(call) -> str:
    with pytest.raises(SeqlmError) as e:
        call()
    return str(e.value)


@pytest.mark.parametrize("overrides, message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_the_command_line_the_constructor_and_train_refuse_a_value_with_one_line(
    overrides, message
):
    groups = [o for o in overrides if o.startswith("model=")]
    cli = _refusal(lambda: checked("train", overrides))
    # the same values reaching the constructor and train's check without the command line's
    cfg = make_config("train", groups)
    for o in overrides:
        if o not in groups:
            key, _, value = o.partition("=")
            OmegaConf.update(cfg, key, yaml.safe_load(value))  # as Hydra's grammar reads it
    model = cfg.model
    constructor = _refusal(lambda: build("model", model, vocab_size=100))
    before_data = _refusal(lambda: check_node("model", model))
    assert message in cli
    assert cli == constructor == before_data


def test_a_value_every_place_accepts():
    args = ["model=lstm", "model.num_layers=2", "model.hidden_sizes=[64,32]"]
    args += ["model.emb_size=32", "model.tie_weights=true", "model.softmax=adaptive"]
    checked("train", args)
    cfg = make_config("train", args)
    check_node("model", cfg.model)
    net = build("model", cfg.model, vocab_size=300)
    assert [layer.hidden_size for layer in net.rnn.layers] == [64, 32]
    assert net.adaptive is not None


def test_the_vocabulary_bound_is_the_one_rule_left_to_the_constructor():
    cfg = make_config("train", ["model.softmax=adaptive", "model.cutoffs=[50,200]"])
    check_node("model", cfg.model)  # no vocabulary yet: nothing to refuse
    message = _refusal(lambda: build("model", cfg.model, vocab_size=100))
    assert message == "model.cutoffs=[50, 200]: 200 is not below the vocabulary size 100"


def test_options_name_every_key_of_their_presets_and_nothing_else():
    for preset, options in (("rnn", RecurrentOptions), ("birnn", CellOptions)):
        keys = set(OmegaConf.to_container(make_config("train", [f"model={preset}"]).model))
        assert keys - {"_target_"} == set(options.__dataclass_fields__)
    with pytest.raises(SeqlmError, match="no such option of RecurrentOptions; did you mean"):
        RecurrentOptions.of({**make_config("train").model, "hiden_size": 3})


@pytest.mark.parametrize(
    "annotation, value, problem",
    [
        (int, 3, None),
        (int, True, "expected an integer"),
        (float, 3, None),
        (float, "x", "expected a number"),
        (int | None, None, None),
        (int | None, 2.5, "expected an integer or null"),
        (bool, 0, "expected true or false"),
        (list[int] | None, (1, 2), "expected list or null"),
    ],
)
def test_one_type_rule(annotation, value, problem):
    assert type_problem(annotation, value) == problem


def test_the_cell_names_are_the_cells_and_a_refusal_imports_no_torch():
    import subprocess
    import sys

    from seqlm.models.recurrent import CELLS
    from seqlm.options import CELL_NAMES, OPTIONS_OF

    assert tuple(CELLS) == CELL_NAMES
    assert set(OPTIONS_OF) == {"seqlm.models.RecurrentLM", "seqlm.models.ClozeLM"}
    code = (
        "import sys\nfrom seqlm.cli.overrides import checked\n"
        "try:\n    checked('train', ['model.num_layers=0'])\nexcept Exception as e:\n"
        "    print(e)\nprint('torch' in sys.modules, 'pytorch_lightning' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.splitlines() == ["model.num_layers=0 must be >= 1", "False False"]
