"""``mix``: linear interpolation with EM weights, checked by hand from per-token exports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config

from seqlm.commands import eval as eval_cmd
from seqlm.commands import mix
from seqlm.commands.train import train
from seqlm.errors import SeqlmError


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("mix")
    overrides = {
        "lstm": ["model=lstm", *TINY_TRAIN],
        "kn3": ["model=kn3", "logger=none"],
        "birnn": ["model=birnn", *TINY_TRAIN],
        "kn2_other": ["model=kn2", "logger=none", "data.max_size=30"],
    }
    for name, extra in overrides.items():
        train(make_config("train", [*SMALL_AGREEMENT, *extra]), run_dir=base / name)
    return base


def test_em_weights_are_a_fixed_point_that_beats_every_component():
    rng = np.random.default_rng(0)
    a = np.log(rng.dirichlet(np.ones(5), 400)[:, 0])  # two made-up models' token log-probs
    b = np.log(rng.dirichlet(np.ones(5), 400)[:, 1])
    lps = np.stack([a, b])
    w, steps = mix.em_weights(lps)
    joint = np.log(w)[:, None] + lps
    one_more = np.exp(joint - np.logaddexp.reduce(joint, axis=0)).mean(1)
    assert np.abs(one_more - w).max() < 1e-6 and w.sum() == pytest.approx(1.0)
    mixed = mix.mixture_logprobs(w, lps).sum()
    assert mixed >= max(a.sum(), b.sum())
    grid = [
        mix.mixture_logprobs(np.array([x, 1 - x]), lps).sum() for x in np.linspace(0.01, 0.99, 99)
    ]
    assert mixed >= max(grid) - 1e-9  # EM's weights are the best on the data they were fit on


def test_mix_perplexity_equals_a_hand_computation_from_two_token_exports(runs, tmp_path):
    cfg = make_config("mix", [f"runs=[{runs / 'lstm'},{runs / 'kn3'}]", "logger=none"])
    m = mix.run(cfg, run_dir=tmp_path / "run")
    exports = {}
    for name in ("lstm", "kn3"):
        out = tmp_path / f"{name}.npz"
        eval_cmd.run(make_config("eval", [f"ckpt={runs / name}", f"tokens_out={out}"]))
        exports[name] = np.load(out)
    lam = np.array(json.loads((tmp_path / "run" / "mix.json").read_text())["weights"])
    assert m["model/weights"] == pytest.approx(lam.tolist())
    # weights from the validation exports by EM, written here independently
    va = np.stack([exports["lstm"]["valid"], exports["kn3"]["valid"]])
    w = np.array([0.5, 0.5])
    for _ in range(5000):
        post = w[:, None] * np.exp(va) / (w[:, None] * np.exp(va)).sum(0)
        w = post.mean(1)
    assert lam == pytest.approx(w, abs=1e-6)
    te = np.stack([exports["lstm"]["test"], exports["kn3"]["test"]])
    by_hand = np.exp(-np.log((lam[:, None] * np.exp(te)).sum(0)).mean())
    assert m["test/ppl"] == pytest.approx(by_hand, rel=1e-9)
    assert m["test/tokens"] == len(te[0])
    assert m["val/loss"] <= min(-va[0].mean(), -va[1].mean()) + 1e-9  # EM never does worse


@pytest.mark.parametrize(
    "names, message",
    [
        (["lstm"], "give two or more run directories"),
        (["lstm", "birnn"], "is a bidirectional cloze model"),
        (["kn3", "kn2_other"], "scores across vocabularies are not comparable"),
    ],
)
def test_bad_mixtures_are_refused_in_one_line(runs, names, message, tmp_path):
    listed = ",".join(str(runs / n) for n in names)
    cfg = make_config("mix", [f"runs=[{listed}]", "logger=none"])
    with pytest.raises(SeqlmError, match=message):
        mix.run(cfg, run_dir=tmp_path)


def test_a_tokens_out_file_mixes_like_its_run_and_other_targets_are_refused(runs, tmp_path):
    """How the test-time methods stack: an exported (e.g. cached) evaluation is a component."""
    export = tmp_path / "lstm.npz"
    eval_cmd.run(make_config("eval", [f"ckpt={runs / 'lstm'}", f"tokens_out={export}"]))
    cfg = make_config("mix", [f"runs=[{runs / 'lstm'},{runs / 'kn3'}]", "logger=none"])
    by_run = mix.run(cfg, run_dir=tmp_path / "a")
    cfg = make_config("mix", [f"runs=[{export},{runs / 'kn3'}]", "logger=none"])
    by_file = mix.run(cfg, run_dir=tmp_path / "b")
    assert by_file["test/ppl"] == pytest.approx(by_run["test/ppl"], rel=1e-9)
    assert by_file["model/weights"] == pytest.approx(by_run["model/weights"], abs=1e-9)
    only_test = tmp_path / "test_only.npz"
    eval_cmd.run(
        make_config("eval", [f"ckpt={runs / 'lstm'}", "splits=[test]", f"tokens_out={only_test}"])
    )
    cfg = make_config("mix", [f"runs=[{only_test},{runs / 'kn3'}]", "logger=none"])
    with pytest.raises(SeqlmError, match="was not scored on the valid targets"):
        mix.run(cfg, run_dir=tmp_path / "c")


def test_a_mix_run_is_a_model_that_scores_new_text(runs, tmp_path):
    """``load_scorer`` of a mix run: sentence log-probabilities are the per-token mixture with
    the run's weights, checked through the components' V-wide next-word distributions."""
    from seqlm.scorers import load_scorer

    cfg = make_config("mix", [f"runs=[{runs / 'lstm'},{runs / 'kn3'}]", "logger=none"])
    m = mix.run(cfg, run_dir=tmp_path / "mix")
    mixture = load_scorer(tmp_path / "mix")
    weights = np.asarray(m["model/weights"])
    parts = [load_scorer(runs / "lstm"), load_scorer(runs / "kn3")]
    lines = [
        mixture.vocab.encode(s.split()) for s in ("the dogs run", "the cat near the dogs runs")
    ]
    for ids, got in zip(lines, mixture.sentence_logprobs(lines)):
        by_hand = 0.0
        for t, w in enumerate([*ids, 1]):
            p = [np.exp(part.next_logprobs(ids[:t])[w]) for part in parts]
            by_hand += np.log(weights @ np.asarray(p))
        assert got == pytest.approx(by_hand, abs=1e-5)
    # the step API of the mix run (what generate and decoders drive) gives the same sums, and
    # its next-word distributions are the weighted components', row by row
    stepper = mixture.stepper()
    for ids, got in zip(lines, mixture.sentence_logprobs(lines)):
        assert stepper.sentence_log_prob(ids) == pytest.approx(got, abs=1e-5)
    state = stepper.advance(stepper.start(2), torch.tensor(lines[0][:1] * 2))
    want = np.log(
        sum(w * np.exp(part.next_logprobs(lines[0][:1])) for w, part in zip(weights, parts))
    )
    np.testing.assert_allclose(stepper.next_log_probs(state)[1].numpy(), want, atol=1e-6)
    # the test split: the mixture's evaluation is the mix run's own figure
    from seqlm.scorers import on_data

    data, _ = on_data(parts[0])
    assert mixture.evaluate(data)["test/ppl"] == pytest.approx(m["test/ppl"], rel=1e-9)


def test_a_mix_of_an_exported_file_cannot_score_new_text(runs, tmp_path):
    from seqlm.scorers import load_scorer

    export = tmp_path / "lstm.npz"
    eval_cmd.run(make_config("eval", [f"ckpt={runs / 'lstm'}", f"tokens_out={export}"]))
    cfg = make_config("mix", [f"runs=[{export},{runs / 'kn3'}]", "logger=none"])
    mix.run(cfg, run_dir=tmp_path / "mix")
    with pytest.raises(SeqlmError, match="is an `eval tokens_out=` file"):
        load_scorer(tmp_path / "mix")
