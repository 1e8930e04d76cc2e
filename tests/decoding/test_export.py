"""ONNX export in icefall's rnn_lm contract (seqlm.export): the with-state file run exactly as
sherpa-onnx's online-rnn-lm.cc runs it, the no-state file as offline-rnn-lm.cc does, both
against the checkpoint's own step API; a recogniser's token table mapped in the graph; int8
quantization; the refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config, preset, seqlm

from seqlm.commands.train import train
from seqlm.data.vocab import Vocab
from seqlm.errors import SeqlmError
from seqlm.scorers import load_scorer

SENTENCES = [
    "the dog near the cats runs",
    "the tall lawyer beside the dancers behind the happy queens follows the poets",
    "cats",
    "",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from conftest import optional

    optional("onnx")
    optional("onnxruntime")
    base = tmp_path_factory.mktemp("export-runs")
    cells = {
        "lstm": ["model.num_layers=2", "model.out_dropout=0.3"],
        "gru": [],
        "mingru": ["model.num_layers=2", "model.tie_weights=true"],
        "mogrifier": ["model.num_layers=2", "model.mogrify_rounds=5"],
        # AWD-LSTM's layers one by one, of unequal sizes (an LSTM) or with dropouth (a GRU)
        "awd": ["model.num_layers=2", "model.hidden_sizes=[12,16]", "model.wdrop=0.2"],
        "awd-gru": ["model.num_layers=2", "model.dropouth=0.2"],
    }
    for cell, extra in cells.items():
        model = {"awd": "lstm", "awd-gru": "gru"}.get(cell, cell)
        cfg = make_config("train", [f"model={model}", *SMALL_AGREEMENT, *TINY_TRAIN, *extra])
        train(cfg, run_dir=base / cell)
    return base


def _exported(runs, cell, tmp_path, tokens=None, quantize=None):
    from seqlm.export import export_onnx

    scorer = load_scorer(runs / cell, device="cpu")
    return scorer, export_onnx(scorer, tmp_path / cell, tokens, quantize)


def _meta(session) -> dict:
    return session.get_modelmeta().custom_metadata_map


def _like_sherpa_online(session, ids: list[int]) -> list[float]:
    """online-rnn-lm.cc: zero states (num_layers, 1, hidden) from the metadata, [[sos_id]]
    read first, then one token at a time; inputs and outputs by position; the log-probability
    of each next token read from log_softmax at its id."""
    meta = _meta(session)
    layers, hidden = int(meta["num_layers"]), int(meta["hidden_size"])
    names = [i.name for i in session.get_inputs()]
    h = np.zeros((layers, 1, hidden), np.float32)
    c = np.zeros((layers, 1, hidden), np.float32)
    scores, token = [], int(meta["sos_id"])
    for nxt in [*ids, int(meta["eos_id"])]:
        x = np.array([[token]], dtype=np.int64)
        lp, h, c = session.run(None, dict(zip(names, (x, h, c))))
        scores.append(float(lp[0, nxt]))
        token = nxt
    return scores


def _step_api(scorer, ids: list[int]) -> list[float]:
    step = scorer.stepper()
    state, out = step.start(1), []
    for t in [*ids, Vocab.eos_id]:
        out.append(float(step.token_log_probs(state, torch.tensor([t]))[0]))
        state = step.advance(state, torch.tensor([t]))
    return out


@pytest.mark.parametrize("cell", ["lstm", "gru", "mingru", "mogrifier", "awd", "awd-gru"])
def test_the_with_state_file_run_as_sherpa_onnx_runs_it_gives_the_step_apis_numbers(
    runs, cell, tmp_path
):
    from seqlm.export import session

    scorer, facts = _exported(runs, cell, tmp_path)
    assert not scorer.net.training  # the exporter puts back the mode it found
    s = session(facts["files"]["with-state"])
    meta = _meta(s)
    assert meta["model_type"] == "rnnlm" and meta["sos_id"] == meta["eos_id"] == "1"
    assert int(meta["vocab_size"]) == len(scorer.vocab)
    assert [i.name for i in s.get_inputs()] == ["x", "h0", "c0"]
    assert [o.name for o in s.get_outputs()] == ["log_softmax", "next_h0", "next_c0"]
    for sentence in SENTENCES:
        ids = scorer.vocab.encode(sentence.split())
        assert _like_sherpa_online(s, ids) == pytest.approx(_step_api(scorer, ids), abs=1e-4)
    layers, width = int(meta["num_layers"]), int(meta["hidden_size"])
    c = np.random.default_rng(0).standard_normal((layers, 1, width)).astype(np.float32)
    x = np.ones((1, 5), np.int64)  # five tokens at once: a loop, not the example's two steps
    out = s.run(None, {"x": x, "h0": np.zeros_like(c), "c0": np.zeros_like(c)})
    ref = scorer.net.log_probs(scorer.net.features(torch.from_numpy(x))[0][:, -1])
    assert np.allclose(out[0], ref.detach().numpy(), atol=1e-4)
    if cell in ("gru", "mingru", "awd-gru"):  # c0 passes through unchanged
        out = s.run(None, {"x": x, "h0": np.zeros_like(c), "c0": c})
        assert np.array_equal(out[2], c) and meta["c0"].startswith("unused")
    if cell == "awd":  # layers of 12 and 16 units in one (2, N, 16) tensor, zeros after 12
        assert (layers, width, meta["seqlm_hidden_sizes"]) == (2, 16, "12,16")
        assert not out[1][0, :, 12:].any() and not out[2][0, :, 12:].any()
        assert out[1][1].all()


@pytest.mark.parametrize("cell", ["lstm", "mogrifier", "mingru", "awd"])
def test_the_no_state_file_scores_sentences_as_offline_rnn_lm_does(runs, cell, tmp_path):
    from seqlm.export import sentence_nll, session

    scorer, facts = _exported(runs, cell, tmp_path)
    s = session(facts["files"]["no-state"])
    lines = [scorer.vocab.encode(t.split()) for t in SENTENCES]
    x = np.zeros((len(lines), max(map(len, lines))), np.int64)
    for i, ln in enumerate(lines):
        x[i, : len(ln)] = ln
    first, second = (i.name for i in s.get_inputs())  # by position, as offline-rnn-lm.cc
    nll = s.run(None, {first: x, second: np.array([len(ln) for ln in lines])})[0]
    expected = [-sum(_step_api(scorer, ln)) for ln in lines]
    assert nll == pytest.approx(expected, abs=1e-3)
    assert sentence_nll(s, lines, batch=2) == pytest.approx(sum(expected), abs=1e-3)
    # the same weights in both files (a 3-D product got a transposed copy of a tied matrix)
    assert _weight_bytes(facts["files"]["no-state"]) == _weight_bytes(facts["files"]["with-state"])


def _weight_bytes(path) -> int:
    import onnx
    from onnx import numpy_helper

    return sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(path)).graph.initializer)


def test_a_recognisers_token_table_is_mapped_in_the_graph(runs, tmp_path):
    from seqlm.export import session

    scorer = load_scorer(runs / "lstm", device="cpu")
    words = ["the", "dog", "cats", "runs"]
    table = tmp_path / "tokens.txt"
    table.write_text("<blk> 0\n<sos/eos> 1\nruns 2\nthe 3\nqwerty 4\ncats 5\ndog 6\n")
    _, facts = _exported(runs, "lstm", tmp_path, tokens=table)
    assert facts["tokens_unknown"] == 2 and set(facts["tokens_unknown_examples"]) == {
        "<blk>",
        "qwerty",
    }
    s = session(facts["files"]["with-state"])
    assert _meta(s)["sos_id"] == "1" and _meta(s)["vocab_size"] == "7"
    rec = {"runs": 2, "the": 3, "cats": 5, "dog": 6}
    ids = [rec[w] for w in ("the", "dog", "runs")]
    got = _like_sherpa_online(s, ids)
    lm = _step_api(scorer, scorer.vocab.encode(["the", "dog", "runs"]))
    assert got == pytest.approx(lm, abs=1e-4)
    assert all(w in scorer.vocab.stoi for w in words)


def test_int8_files_keep_the_perplexity_within_two_percent(runs, tmp_path):
    from seqlm.commands.export import sentence_ppl
    from seqlm.data.batching import line_ids
    from seqlm.export import perplexities
    from seqlm.scorers import on_data

    scorer, facts = _exported(runs, "lstm", tmp_path, quantize="int8")
    data, scorer = on_data(scorer, None)
    lines = line_ids(data.ids["test"], Vocab.eos_id)
    ppl = perplexities({k: v for k, v in facts["files"].items()}, lines)
    reference = sentence_ppl(scorer, lines)  # each sentence from its start, as the file does
    assert ppl["no-state"] == pytest.approx(reference, rel=1e-4)
    assert ppl["no-state.int8"] == pytest.approx(ppl["no-state"], rel=0.02)
    assert facts["bytes"]["with-state.int8"] < facts["bytes"]["with-state"]


def test_the_command_and_its_refusals(runs, tmp_path):
    r = seqlm("export", f"ckpt={runs / 'lstm'}", f"out={tmp_path / 'o'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    facts = json.loads((tmp_path / "o" / "export.json").read_text())
    assert math.isclose(
        facts["test_ppl"]["no-state"], facts["test_ppl"]["checkpoint"], rel_tol=1e-4
    )
    assert (tmp_path / "o" / "tokens.txt").read_text().splitlines()[1] == "<eos> 1"
    for args, message in (
        ([f"ckpt={runs / 'lstm'}", "out=x", "format=tflite"], "format='tflite' is not one of"),
        ([f"ckpt={runs / 'lstm'}", "out=x", "quantize=int4"], "quantize='int4': only int8"),
        ([f"ckpt={runs / 'lstm'}", "out=x", "tokens=nope.txt"], "tokens=nope.txt: no such file"),
    ):
        r = seqlm("export", *args, cwd=tmp_path)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and message in lines[-1], r.stderr[-1500:]
        assert "Traceback" not in r.stderr


def test_the_fill_in_the_blank_model_is_refused_in_one_line():
    from seqlm.export import exportable

    with pytest.raises(SeqlmError, match="fill-in-the-blank"):
        exportable(preset("model", "birnn", vocab_size=20, emb_size=8, hidden_size=8))


def test_an_export_loads_back_and_eval_score_and_the_step_api_run_on_it(runs, tmp_path):
    import seqlm
    from seqlm.commands.export import sentence_ppl
    from seqlm.data.batching import line_ids
    from seqlm.export import write_facts
    from seqlm.scorers import on_data

    scorer, facts = _exported(runs, "lstm", tmp_path)
    write_facts(tmp_path / "lstm", facts)
    onnx = load_scorer(tmp_path / "lstm")
    assert onnx.family == "onnx" and onnx.vocab == scorer.vocab
    lines = [scorer.vocab.encode(t.split()) for t in SENTENCES]
    assert np.allclose(onnx.sentence_logprobs(lines), scorer.sentence_logprobs(lines), atol=1e-4)
    data, onnx = on_data(onnx, None)  # the run's own data, from the config export.json keeps
    ppl = onnx.evaluate(data, ("test",))["test/ppl"]
    _, ckpt = on_data(scorer, None)
    expected = sentence_ppl(ckpt, line_ids(data.ids["test"], Vocab.eos_id))
    assert ppl == pytest.approx(expected, rel=1e-4)
    step, ref = seqlm.load(tmp_path / "lstm"), scorer.stepper()
    a, b = step.start(2), ref.start(2)
    tokens = torch.tensor(scorer.vocab.encode(["the", "cats"]))
    for _ in range(3):
        assert torch.allclose(step.next_log_probs(a), ref.next_log_probs(b), atol=1e-4)
        a, b = step.advance(a, tokens), ref.advance(b, tokens)
    a = step.select(step.concat([a, step.start(1)]), torch.tensor([2, 0]))
    b = ref.select(ref.concat([b, ref.start(1)]), torch.tensor([2, 0]))
    assert torch.allclose(step.next_log_probs(a), ref.next_log_probs(b), atol=1e-4)
    r = seqlm_cli_eval(tmp_path / "lstm", tmp_path)
    assert r.returncode == 0, r.stderr[-1500:]


def seqlm_cli_eval(export, cwd):
    return seqlm("eval", f"ckpt={export}", "splits=[test]", cwd=cwd)
