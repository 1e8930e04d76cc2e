"""CTC decoding (``decoding.ctc``, the ``decode`` command): the prefix beam search against a
brute-force sum over every alignment, with and without an LM, in both units; against the best
path when it must agree; batched against one utterance at a time; and the inputs a user can get
wrong, each refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config, optional

import seqlm
from seqlm.commands.decode import run as decode_run
from seqlm.commands.train import train
from seqlm.decoding.ctc import (
    Alphabet,
    Decoder,
    Search,
    brute_force,
    check_posteriors,
    greedy,
    read_posteriors,
    read_tokens,
)
from seqlm.errors import SeqlmError

WORDS = ["<blank>", "the", "dog", "dogs", "runs", "zzz"]  # zzz: outside the LM's vocabulary
LETTERS = ["<blank>", "t", "h", "e", "<space>", "d", "o", "g"]
EXHAUSTIVE = dict(beam=10**6, topk=100, prune=-np.inf, threshold=np.inf)  # every prefix: exact


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    base = tmp_path_factory.mktemp("ctc-lms")
    for name, extra in {"kn3": ["logger=none"], "lstm": TINY_TRAIN}.items():
        train(make_config("train", [f"model={name}", *SMALL_AGREEMENT, *extra]), base / name)
    return base


def log_softmax(x: np.ndarray) -> np.ndarray:
    top = x.max(1, keepdims=True)
    return (x - top - np.log(np.exp(x - top).sum(1, keepdims=True))).astype(np.float32)


def posteriors(rng, frames: int, classes: int, scale: float = 1.5) -> np.ndarray:
    return log_softmax(rng.normal(size=(frames, classes)) * scale)


def lm_log_prob(lm, alphabet: Alphabet, labels, unit: str) -> float:
    """ln P_LM of a label sequence's text and </s>, as the LM scores a sentence: each class
    one LM token spelled as the class (char), or the text's words (word)."""
    text = alphabet.text(labels)
    tokens = [alphabet.tokens[c] for c in labels] if unit == "char" else text.split()
    return lm.sentence_log_prob(lm.vocab.encode(tokens))


@pytest.mark.parametrize("blank", [0, 3])
def test_prefix_probabilities_are_the_sum_over_all_alignments(blank):
    rng = np.random.default_rng(blank)
    alphabet = Alphabet([f"c{k}" for k in range(4)], blank)
    decoder = Decoder(alphabet)
    for frames in (1, 4, 6):
        logp = posteriors(rng, frames, 4)
        exact = brute_force(logp, blank)
        found = decoder.beams([logp], Search(**EXHAUSTIVE, alpha=0.0))[0]
        assert {h.labels for h in found} == set(exact)
        for h in found:
            assert h.ctc == pytest.approx(exact[h.labels], abs=1e-9)


@pytest.mark.parametrize("name", ["kn3", "lstm"])
@pytest.mark.parametrize("unit", ["char", "word"])
def test_the_fused_best_is_the_brute_force_argmax(lms, name, unit):
    """With every prefix kept, the search's choice and score are the argmax over all label
    sequences of ln P_ctc + α ln P_LM + β units + γ oov, the LM scoring each whole text as a
    sentence (``zzz`` and most letter strings are outside its vocabulary)."""
    lm = seqlm.load(lms / name)
    alphabet = Alphabet(WORDS if unit == "char" else LETTERS, 0)
    decoder = Decoder(alphabet, lm, unit)
    rng = np.random.default_rng(7)
    utterances = [posteriors(rng, 5, len(alphabet)), posteriors(rng, 3, len(alphabet))]
    alpha, beta, gamma = 0.7, 0.4, -1.5
    search = Search(**EXHAUSTIVE, alpha=alpha, beta=beta, gamma=gamma)
    hyps = decoder.decode(utterances, search)
    for logp, hyp in zip(utterances, hyps):
        exact = brute_force(logp, 0)

        def total(labels, exact=exact):
            text = alphabet.text(labels)
            tokens = [alphabet.tokens[c] for c in labels] if unit == "char" else text.split()
            oov = sum(t not in lm.vocab.stoi for t in tokens)
            lp = lm_log_prob(lm, alphabet, labels, unit)
            return exact[labels] + alpha * lp + beta * len(tokens) + gamma * oov

        best = max(exact, key=total)
        assert alphabet.text(hyp.labels) == alphabet.text(best)
        assert hyp.score == pytest.approx(total(best), abs=1e-6)
        assert hyp.lm == pytest.approx(lm_log_prob(lm, alphabet, hyp.labels, unit), abs=1e-6)


def test_char_mode_separators_are_scored_as_the_char_tokenizer_reads_the_text(lms):
    """A leading, doubled or trailing separator is not text: the LM part equals the LM's
    score of the text's characters, runs of white space one ``▁``."""
    lm = seqlm.load(lms / "kn3")
    alphabet = Alphabet(["<blank>", "the", "dog", " "], 0)
    decoder = Decoder(alphabet, lm, "char")
    # frames spelling " the  dog " with blanks between repeats
    path = [3, 1, 3, 0, 3, 2, 3]
    logp = log_softmax(np.eye(4)[path] * 20.0)
    hyp = decoder.decode([logp], Search(beam=8, alpha=1.0))[0]
    assert alphabet.text(hyp.labels) == "the dog"
    ids = lm.vocab.encode(["the", "▁", "dog"])
    assert hyp.lm == pytest.approx(lm.sentence_log_prob(ids), abs=1e-6)
    assert hyp.units == 3


def test_beam_one_without_an_lm_is_the_best_path_on_confident_posteriors():
    """When every frame's best class has p > 1/2, the best prefix of each frame is the best
    path's (a class with p < 1/2 cannot outweigh the rest): beam 1 must equal greedy."""
    rng = np.random.default_rng(3)
    alphabet = Alphabet([f"c{k}" for k in range(6)], 0)
    decoder = Decoder(alphabet)
    for _ in range(20):
        frames = int(rng.integers(1, 30))
        x = rng.normal(size=(frames, 6)) * 0.5
        x[np.arange(frames), rng.integers(0, 6, frames)] += 4.0
        logp = log_softmax(x)
        assert np.exp(logp.max(1)).min() > 0.5
        hyp = decoder.decode([logp], Search(beam=1, alpha=0.0))[0]
        assert list(hyp.labels) == greedy(logp, 0)


@pytest.mark.parametrize("name", ["kn3", "lstm"])
@pytest.mark.parametrize("slack", [256, 0])
def test_batched_decoding_equals_one_utterance_at_a_time(lms, name, slack, monkeypatch):
    """Searching a batch together gives each utterance what searching it alone does, also
    when the bank drops its dead rows after every frame (``slack`` 0)."""
    from seqlm.decoding.ctc import LMBank

    monkeypatch.setattr(LMBank, "SLACK", slack)
    lm = seqlm.load(lms / name)
    alphabet = Alphabet(LETTERS, 0)
    rng = np.random.default_rng(11)
    utterances = [posteriors(rng, int(n), len(LETTERS), 2.0) for n in rng.integers(1, 25, 9)]
    for unit in ("char", "word"):
        search = Search(beam=4, topk=5, prune=-6.0, alpha=0.8, beta=0.5)
        together = Decoder(alphabet, lm, unit)
        batched = together.decode(utterances, search)
        alone = [Decoder(alphabet, lm, unit).decode([u], search)[0] for u in utterances]
        assert [h.labels for h in batched] == [h.labels for h in alone]
        np.testing.assert_allclose(
            [h.score for h in batched], [h.score for h in alone], rtol=0, atol=1e-6
        )
        frames = max(len(u) for u in utterances)
        assert together.calls <= frames + 1  # one LM call per frame for the whole batch


def test_tokens_are_read_verbatim(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_bytes("<blank>\n你\n\u3000\n \n<space>\n▁\nab\n".encode())
    a = read_tokens(path)
    assert a.tokens == ["<blank>", "你", "\u3000", " ", "<space>", "▁", "ab"]
    assert a.separator.tolist() == [False, False, True, True, True, True, False]
    assert a.text([1, 2, 1, 3, 4, 6]) == "你 你 ab"
    path.write_bytes(b"<blank>\r\na\r\nb\r\n")
    assert read_tokens(path).tokens == ["<blank>", "a", "b"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda x: np.exp(x), "linear probabilities"),
        (lambda x: x * 3.0, "raw logits"),
        (lambda x: np.where(np.arange(x.shape[1]) == 2, np.nan, x), "NaN at frame 0"),
        (lambda x: x[None], r"shape \(1, 5, 4\); expected \(frames, classes\)"),
        (lambda x: x[:, :3], "3 classes, but tokens lists 4"),
    ],
)
def test_posteriors_that_are_not_log_probabilities_are_refused(make, message):
    x = log_softmax(np.random.default_rng(0).normal(size=(5, 4)))
    with pytest.raises(SeqlmError, match=message):
        check_posteriors("u1.npy", make(x), 4)


def test_a_blank_out_of_range_and_an_empty_class_are_refused(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("<blank>\na\nb\n")
    with pytest.raises(SeqlmError, match="blank=3 is out of range: tokens has 3 classes"):
        read_tokens(path, blank=3)
    path.write_text("<blank>\na\n\nb\n")
    with pytest.raises(SeqlmError, match=r"tokens.txt:3: class 2 has no text"):
        read_tokens(path)


SENTENCES = [
    "the dog runs",
    "the dogs run",
    "the cat sleeps",
    "the lawyer runs",
    "the dancers sleep",
    "the queen follows the dogs",
    "the poets follow the queen",
    "a dog sees the cats",
]
ALPHABET = ["<blank>", *"abcdefghijklmnopqrstuvwxyz", "<space>"]


def noisy_recogniser(folder, rng, sentences=SENTENCES) -> None:
    """Posteriors of a recogniser that spells each sentence with every character over two
    frames and a blank after, the right class only 3 logits above noise: greedy decoding
    makes many errors, an LM of the same corpus corrects many."""
    (folder / "post").mkdir()
    refs = []
    for i, sentence in enumerate(sentences):
        frames = []
        for ch in sentence:
            c = ALPHABET.index("<space>" if ch == " " else ch)
            for target in (c, c, 0):
                x = rng.normal(size=len(ALPHABET))
                x[target] += 3.0
                frames.append(x)
        np.save(folder / "post" / f"u{i}.npy", log_softmax(np.asarray(frames)))
        refs.append(f"u{i}\t{sentence}\n")
    (folder / "tokens.txt").write_text("\n".join(ALPHABET) + "\n")
    (folder / "refs.tsv").write_text("".join(refs))


def test_decode_tunes_on_dev_and_writes_its_figures(lms, tmp_path):
    noisy_recogniser(tmp_path, np.random.default_rng(0))
    args = [f"posteriors={tmp_path / 'post'}", f"tokens={tmp_path / 'tokens.txt'}"]
    cfg = make_config(
        "decode",
        [
            f"ckpt={lms / 'kn3'}",
            *args,
            f"refs={tmp_path / 'refs.tsv'}",
            "unit=word",
            "logger=none",
            "tune.lm=[0.5,1.0]",
            "tune.units=[0.0,1.0]",
        ],
    )
    out = tmp_path / "run"
    metrics = decode_run(cfg, out)
    record = json.loads((out / "decode.json").read_text())
    for key in (
        "dev/cer",
        "test/cer",
        "test/cer_greedy",
        "test/wer",
        "test/wer_greedy",
        "test/utterances",
        "test/ref_chars",
        "weights/lm",
        "weights/units",
    ):
        assert key in record and key in metrics
    assert record["test/utterances"] == 4 and record["dev/utterances"] == 4
    assert record["test/ref_chars"] == sum(len(s.replace(" ", "")) for s in SENTENCES[4:])
    assert record["weights/lm"] in (0.5, 1.0) and record["weights/units"] in (0.0, 1.0)
    # the start, then the joint grid (positive unit weights), then coordinate descent: every
    # point decoded is in the trace, and none beat the one chosen
    tried = {(p["lm"], p["units"]): p["dev_error"] for p in record["search"]}
    assert set(tried) >= {(0.5, 0.0), (0.5, 1.0), (1.0, 1.0)}
    assert tried[(record["weights/lm"], record["weights/units"])] == min(tried.values())
    assert record["test/wer"] < record["test/wer_greedy"] / 2
    assert record["test/cer"] < record["test/cer_greedy"] / 2
    lines = (out / "decoded.tsv").read_text().splitlines()
    assert lines[0] == "utt\tgreedy\tfused" and len(lines) == 1 + len(SENTENCES)
    fused = dict(line.split("\t")[::2] for line in lines[1:])
    assert sum(fused[f"u{i}"] == s for i, s in enumerate(SENTENCES)) >= 5
    assert metrics["model/family"] == "decode"
    assert 0 < record["time/lm_share"] < 1 and record["decode/lm_calls"] > 0
    from seqlm.commands.compare import compare

    (row,) = compare([out], tmp_path / "cmp")
    assert row["model"] == "decode" and row["cell"] == "kn3"
    assert row["test_cer"] == pytest.approx(100 * record["test/cer"])
    assert row["test_cer_greedy"] == pytest.approx(100 * record["test/cer_greedy"])


def test_decode_with_given_weights_needs_no_references(lms, tmp_path):
    noisy_recogniser(tmp_path, np.random.default_rng(1), SENTENCES[:3])
    cfg = make_config(
        "decode",
        [
            f"ckpt={lms / 'lstm'}",
            f"posteriors={tmp_path / 'post'}",
            f"tokens={tmp_path / 'tokens.txt'}",
            "unit=word",
            "logger=none",
            "weights.lm=0.7",
        ],
    )
    metrics = decode_run(cfg, tmp_path / "run")
    assert metrics["weights/lm"] == 0.7 and "test/cer" not in metrics
    rows = (tmp_path / "run" / "decoded.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[0] for r in rows] == ["u0", "u1", "u2"]


def test_an_npz_of_posteriors_reads_like_a_folder(tmp_path):
    noisy_recogniser(tmp_path, np.random.default_rng(2), SENTENCES[:2])
    arrays = {f.stem: np.load(f) for f in sorted((tmp_path / "post").glob("*.npy"))}
    np.savez(tmp_path / "post.npz", **arrays)
    a = read_posteriors(tmp_path / "post.npz", len(ALPHABET))
    b = read_posteriors(tmp_path / "post", len(ALPHABET))
    assert list(a) == list(b) == ["u0", "u1"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_bad_decode_inputs_get_one_line(lms, tmp_path):
    noisy_recogniser(tmp_path, np.random.default_rng(3), SENTENCES[:2])
    np.save(tmp_path / "post" / "u1.npy", np.exp(np.load(tmp_path / "post" / "u1.npy")))
    base = [f"ckpt={lms / 'kn3'}", f"tokens={tmp_path / 'tokens.txt'}", "logger=none"]

    def seqlm_cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "seqlm", "decode", *base, *args, "hydra.run.dir=out"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )

    r = seqlm_cli(f"posteriors={tmp_path / 'post'}")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"seqlm: error: {tmp_path / 'post' / 'u1.npy'}: linear probabilities (each frame sums "
        "to 1); give their natural log (log_softmax of the model's output)"
    ]
    np.save(tmp_path / "post" / "u1.npy", np.log(np.load(tmp_path / "post" / "u1.npy")))
    (tmp_path / "refs.tsv").write_text("u0\tthe dog runs\n")
    r = seqlm_cli(f"posteriors={tmp_path / 'post'}", f"refs={tmp_path / 'refs.tsv'}")
    assert r.returncode == 2 and "no reference for utterance 'u1'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "decode.json").exists()


@pytest.mark.parametrize("name", ["kn3", "lstm"])
def test_flashlight_lexicon_free_decoder_with_the_adapter_finds_seqlms_beams(lms, name):
    """flashlight-text's LexiconFreeDecoder driving the LM through ``adapters.flashlight_lm``
    (one call per hypothesis and token), every hypothesis kept and paths into one prefix
    log-added: its best text and fused score are seqlm's own search's with the same LM."""
    fl = optional("flashlight.lib.text.decoder")
    from seqlm.adapters import flashlight_lm

    lm = seqlm.load(lms / name)
    alphabet = Alphabet(WORDS, 0)
    ours = Decoder(alphabet, lm, "char")
    rng = np.random.default_rng(5)
    for frames in (3, 6):
        logp = posteriors(rng, frames, len(WORDS))
        options = fl.LexiconFreeDecoderOptions(
            beam_size=10**4,
            beam_size_token=len(WORDS),
            beam_threshold=1e9,
            lm_weight=0.8,
            sil_score=0.0,
            log_add=True,
            criterion_type=fl.CriterionType.CTC,
        )
        adapter = flashlight_lm(lm, WORDS)
        theirs = fl.LexiconFreeDecoder(options, adapter, 0, 0, [])
        emissions = np.ascontiguousarray(logp, dtype=np.float32)
        best = theirs.decode(emissions.ctypes.data, frames, len(WORDS))[0]
        path = [t for t in best.tokens if t >= 0]
        labels = [c for i, c in enumerate(path) if c != 0 and (i == 0 or c != path[i - 1])]
        hyp = ours.decode([logp], Search(**EXHAUSTIVE, alpha=0.8))[0]
        assert alphabet.text(labels) == alphabet.text(hyp.labels)
        assert best.score == pytest.approx(hyp.score, abs=1e-4)  # flashlight sums in float32
