"""The Lightning module, evaluation arithmetic and the train/eval commands, end to end."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config, shared
from hydra.utils import instantiate

from seqlm.commands.train import train
from seqlm.data import LMData
from seqlm.errors import SeqlmError
from seqlm.evaluation.metrics import Perplexity
from seqlm.evaluation.summary import summarize
from seqlm.models.recurrent import BF16_FALLBACK, cpu_bf16_lstm
from seqlm.scorers import load_scorer

DESIGN_KEYS = ("loss", "ppl", "bits", "tokens")


def test_perplexity_is_token_weighted_not_a_mean_of_means():
    nll = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0])]  # batches of 3 and 1 tokens
    m = Perplexity()
    for x in nll:
        m.update(x)
    assert m.compute() == (pytest.approx(16.0), 4)
    assert summarize(*m.compute(), "x")["x/ppl"] == pytest.approx(math.exp(16 / 4))  # not exp(6)
    s = summarize(16.0, 4, "test")
    assert s == pytest.approx(
        {
            "test/loss": 4.0,
            "test/ppl": math.exp(4.0),
            "test/bits": 4.0 / math.log(2),
            "test/tokens": 4,
        }
    )
    assert "test/pseudo_ppl" in summarize(1.0, 1, "test", pseudo=True)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = make_config("train", [*SMALL_AGREEMENT, *TINY_TRAIN, "trainer.max_epochs=2"])
    return out, train(cfg, run_dir=out)


def test_train_writes_the_run_directory(small_run):
    out, metrics = small_run
    on_disk = json.loads((out / "metrics.json").read_text())
    for split in ("val", "test"):
        for k in DESIGN_KEYS:
            assert f"{split}/{k}" in on_disk
    assert on_disk["test/ppl"] == pytest.approx(metrics["test/ppl"])
    assert on_disk["test/ppl"] >= on_disk["test/ppl_floor"] * 0.98
    assert (out / "checkpoints" / "best.ckpt").exists() and (
        out / "checkpoints" / "last.ckpt"
    ).exists()
    assert json.loads((out / "vocab.json").read_text())[:2] == ["<unk>", "<eos>"]
    assert "model:" in (out / "config.yaml").read_text()
    assert 0.0 <= on_disk["test/agreement"] <= 1.0


def test_test_ppl_equals_a_hand_computation_over_the_whole_split(small_run):
    """Unroll the trained model over the test stream in one pass, token by token, and compare
    with the figure of the batched, windowed evaluation (10 streams, fresh states)."""
    out, metrics = small_run
    loaded = load_scorer(out)
    cfg = make_config("train", [*SMALL_AGREEMENT, *TINY_TRAIN])
    data: LMData = instantiate(cfg.data, _convert_="all")
    data.prepare()
    ids = torch.from_numpy(data.ids["test"]).long()
    n = len(ids)
    L = math.ceil(n / data.eval_batch_size)
    total = 0.0
    with torch.no_grad():
        for b in range(data.eval_batch_size):  # each stream from a zero state, as documented
            tgt = ids[b * L : (b + 1) * L]
            prev = torch.cat([torch.tensor([1]), ids])[b * L : b * L + len(tgt)]
            logits, _ = loaded.net(prev[None])
            total += F.cross_entropy(logits[0], tgt, reduction="sum").item()
    assert metrics["test/tokens"] == n
    assert metrics["test/loss"] == pytest.approx(total / n, rel=1e-6)
    assert metrics["test/ppl"] == pytest.approx(math.exp(total / n), rel=1e-6)


def test_sentence_logprob_is_the_chain_rule_sum(small_run):
    loaded = load_scorer(small_run[0])
    words = ["the", "dog", "near", "the", "cats", "sleeps"]
    ids = loaded.vocab.encode(words)
    lp = loaded.sentence_logprobs([ids, ids[:3]])
    with torch.no_grad():
        logits, _ = loaded.net(torch.tensor([[1, *ids]]))
        logp = torch.log_softmax(logits[0], -1)
        expect = sum(logp[t, w].item() for t, w in enumerate([*ids, 1]))
    assert lp[0] == pytest.approx(expect, abs=1e-4)
    # the probabilities of all one-word continuations of a context sum to one
    assert torch.logsumexp(logp[2], 0).item() == pytest.approx(0.0, abs=1e-5)


def test_eval_command_reproduces_the_training_figures(small_run):
    from seqlm.commands import eval as eval_cmd

    out, metrics = small_run
    again = eval_cmd.run(make_config("eval", [f"ckpt={out}"]))
    assert again["test/ppl"] == pytest.approx(metrics["test/ppl"], rel=1e-9)
    assert again["val/ppl"] == pytest.approx(metrics["val/ppl"], rel=1e-9)


def test_training_without_validation_tests_the_last_checkpoint(tmp_path):
    """``limit_val_batches=0`` (long runs, benchmarks): no best-by-validation checkpoint, so
    the test uses last.ckpt, and nothing asks for validation figures that do not exist."""
    from seqlm.commands import eval as eval_cmd

    cfg = make_config(
        "train", [*SMALL_AGREEMENT, *TINY_TRAIN, "optim=sgd", "+trainer.limit_val_batches=0"]
    )
    m = train(cfg, run_dir=tmp_path)
    assert not any(k.startswith("val/") and k != "val/ppl_floor" for k in m)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert m["checkpoint"] == str(last) and not (tmp_path / "checkpoints" / "best.ckpt").exists()
    again = eval_cmd.run(make_config("eval", [f"ckpt={last}", "splits=[test]"]))
    assert again["test/ppl"] == pytest.approx(m["test/ppl"], rel=1e-9)


def test_tokens_out_sums_to_the_evaluation_figures(small_run, tmp_path):
    """The per-token export of a network reads the split as evaluation does: its sums give
    the very loss eval reports; every target is there, in order."""
    import numpy as np

    from seqlm.commands import eval as eval_cmd

    out, metrics = small_run
    m = eval_cmd.run(make_config("eval", [f"ckpt={out}", f"tokens_out={tmp_path / 't.npz'}"]))
    z = np.load(tmp_path / "t.npz")
    for split, stage in (("valid", "val"), ("test", "test")):
        assert len(z[split]) == len(z[f"{split}_ids"]) == m[f"{stage}/tokens"]
        assert -z[split].mean() == pytest.approx(m[f"{stage}/loss"], rel=1e-6)
    assert not z["pseudo"] and str(z["family"]) == "network"
    with pytest.raises(SeqlmError, match="tokens_out=.*: folder .*nowhere does not exist"):
        eval_cmd.run(
            make_config("eval", [f"ckpt={out}", f"tokens_out={tmp_path / 'nowhere' / 't.npz'}"])
        )


def test_birnn_reports_pseudo_perplexity_only(tmp_path):
    cfg = make_config("train", [*SMALL_AGREEMENT, *TINY_TRAIN, "model=birnn", "model.cell=gru"])
    m = train(cfg, run_dir=tmp_path)
    assert "test/pseudo_ppl" in m and "test/ppl" not in m
    # its per-token export is marked pseudo and sums to the pseudo-log-likelihood's loss
    import numpy as np

    from seqlm.commands import eval as eval_cmd

    eval_cmd.run(make_config("eval", [f"ckpt={tmp_path}", f"tokens_out={tmp_path / 't.npz'}"]))
    z = np.load(tmp_path / "t.npz")
    assert bool(z["pseudo"]) and len(z["test"]) == m["test/tokens"]
    assert -z["test"].mean() == pytest.approx(m["test/loss"], rel=1e-5)
    lines = list(instantiate(cfg.data, _convert_="all").corpus.lines("test"))
    assert m["test/tokens"] == len(lines) + sum(len(x) for x in lines)  # words + one <eos> each


@pytest.mark.slow
def test_default_lstm_reaches_the_floor_and_learns_agreement(tmp_path):
    """The main command as shipped (`python -m seqlm train model=lstm`): test ppl within 10% of
    the corpus floor, agreement >= 90% at subject-verb distance >= 5."""
    cfg = make_config("train", ["model=lstm", "logger=none", "trainer.enable_progress_bar=false"])
    m = train(cfg, run_dir=tmp_path)
    assert m["test/ppl"] <= 1.10 * m["test/ppl_floor"]
    assert m["test/agreement_far"] >= 0.90


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rnn", "deep_rnn", "lstm", "gru", "birnn"])
def test_every_model_on_ptb_scores_all_82430_test_tokens(model, tmp_path):
    root = shared("ptb")
    cfg = make_config(
        "train",
        [
            f"model={model}",
            "data=ptb",
            f"data.root={root}",
            "trainer.max_steps=50",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
            "logger=none",
            # small layers: the 10k-way softmax over 156k evaluation tokens dominates the time
            "model.emb_size=64",
            "model.hidden_size=64",
        ],
    )
    m = train(cfg, run_dir=tmp_path)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    ppl_key = "pseudo_ppl" if model == "birnn" else "ppl"
    for split in ("val", "test"):
        for k in ("loss", ppl_key, "bits", "tokens"):
            assert f"{split}/{k}" in on_disk
    assert on_disk["test/tokens"] == 82430 and on_disk["val/tokens"] == 73760
    assert on_disk["data/vocab_size"] == 10000
    assert m["test/loss"] < math.log(10000)  # 50 steps already beat the uniform guess


class _Dtypes(pl.Callback):
    """The dtype of the training loss, of the logits, and of the recurrent layers' output,
    while training."""

    def __init__(self):
        self.loss: set[torch.dtype] = set()
        self.logits: set[torch.dtype] = set()
        self.cells: set[torch.dtype] = set()

    def on_fit_start(self, trainer, pl_module):
        def record(into):
            def hook(module, args, out):
                if module.training:
                    into.add(out[0].dtype)

            return hook

        pl_module.net.decoder.register_forward_hook(record(self.logits))
        pl_module.net.rnn.register_forward_hook(record(self.cells))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.loss.add(outputs["loss"].dtype)


def test_bf16_mixed_keeps_the_loss_in_float32_and_learns_like_fp32(tmp_path):
    """On a CPU with a bf16 LSTM kernel the cells run in bf16; on one without (AVX2 only) they
    run in float32 and a warning says so. Either way the decoder runs in bf16, the loss is
    float32, and the model learns as in fp32."""
    native = cpu_bf16_lstm()
    results = {}
    for precision in ("32-true", "bf16-mixed"):
        probe = _Dtypes()
        cfg = make_config(
            "train",
            [
                *SMALL_AGREEMENT,
                *TINY_TRAIN,
                "trainer.max_epochs=2",
                f"trainer.precision={precision}",
            ],
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results[precision] = train(cfg, run_dir=tmp_path / precision, callbacks=[probe])
        said = any(BF16_FALLBACK in str(w.message) for w in caught)
        assert said == (precision == "bf16-mixed" and not native)
        assert probe.loss == {torch.float32}
        half = precision == "bf16-mixed"
        assert probe.logits == {torch.bfloat16 if half else torch.float32}
        assert probe.cells == {torch.bfloat16 if half and native else torch.float32}
    fp32, bf16 = results["32-true"]["val/ppl"], results["bf16-mixed"]["val/ppl"]
    assert bf16 == pytest.approx(fp32, rel=0.05)


class _WindowLengths(pl.Callback):
    def __init__(self):
        self.lengths: dict[int, list[int]] = {}
        self.stream_epochs: set[tuple[int, int]] = set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lengths.setdefault(trainer.current_epoch, []).append(batch["input"].shape[1])
        self.stream_epochs.add((trainer.current_epoch, trainer.datamodule.stream.epoch))


def test_every_epoch_draws_its_own_windows(tmp_path):
    probe = _WindowLengths()
    cfg = make_config(
        "train",
        [*SMALL_AGREEMENT, *TINY_TRAIN, "trainer.max_epochs=3", "data.variable_bptt=true"],
    )
    train(cfg, run_dir=tmp_path, callbacks=[probe])
    assert probe.stream_epochs == {(0, 0), (1, 1), (2, 2)}  # the stream knows its epoch
    assert sorted(probe.lengths) == [0, 1, 2]
    # AWD draws are seeded by (seed, epoch): each epoch cuts the stream differently, whole
    assert len({tuple(v) for v in probe.lengths.values()}) == 3
    assert len({sum(v) for v in probe.lengths.values()}) == 1


class _Explode(pl.Callback):
    """From global step ``at`` on, a learning rate no network survives."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.at:
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = 1e4


def test_divergence_stops_training_and_keeps_the_good_checkpoints(tmp_path):
    """An explosion in the second epoch: training stops at once with one line naming the step,
    the lr, recent gradient norms and the remedy; the checkpoints of the first epoch stay, all
    finite; metrics.json and the W&B run say the run diverged."""
    from wandb_files import read_wandb_run

    from seqlm.errors import Diverged

    cfg = make_config(
        "train",
        [
            *SMALL_AGREEMENT,
            *TINY_TRAIN,
            "model=rnn",
            "model.nonlinearity=relu",
            "optim=sgd",
            "optim.optimizer.lr=0.1",
            "trainer.gradient_clip_val=0",
            "trainer.max_epochs=3",
            "logger=wandb",
        ],
    )
    steps_per_epoch = (6000 // 8) // 20
    with pytest.raises(Diverged) as e:
        train(cfg, run_dir=tmp_path, callbacks=[_Explode(at=steps_per_epoch + 2)])
    message = str(e.value)
    assert "\n" not in message and "training diverged at step" in message
    assert "lr 10000" in message and "trainer.gradient_clip_val" in message
    assert "optim.optimizer.lr=1000" in message
    step = e.value.step
    assert steps_per_epoch + 2 <= step <= steps_per_epoch + 10
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["status"] == "diverged" and on_disk["diverged/step"] == step
    for name in ("best.ckpt", "last.ckpt"):
        state = torch.load(tmp_path / "checkpoints" / name, weights_only=True)["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values())
        assert torch.load(tmp_path / "checkpoints" / name, weights_only=True)["global_step"] <= step
    assert read_wandb_run(tmp_path)["exit_code"] == 1


def test_fill_finds_one_blank_in_a_character_level_run(tmp_path):
    """The tutorial's 手机 sentence on a character-level model: ___ is one blank, not three
    characters, and the answer is the normalised whole-sentence probability of each character."""
    import numpy as np

    from seqlm.commands import fill

    corpus = tmp_path / "zh.txt"
    lines = ["我的手机坏了，我打算买一部新手机。", "他的车坏了，他打算修一辆旧车。"] * 200
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = make_config(
        "train",
        [
            "data=text",
            f"data.path={corpus}",
            "data.tokenizer=char",
            "data.batch_size=4",
            *TINY_TRAIN,
        ],
    )
    train(cfg, run_dir=tmp_path / "run")
    best = fill.run(
        make_config("fill", [f"ckpt={tmp_path / 'run'}", "text='我打算___一部新手机'", "top_k=3"])
    )
    scorer = load_scorer(tmp_path / "run")
    left, right = scorer.vocab.encode(list("我打算")), scorer.vocab.encode(list("一部新手机"))
    whole = scorer.sentence_logprobs([[*left, w, *right] for w in range(len(scorer.vocab))])
    whole[:2] = -np.inf
    p = np.exp(whole - whole.max())
    p /= p.sum()
    top = np.argsort(-p)[:3]
    assert [w for w, _ in best] == [scorer.vocab.itos[i] for i in top]
    assert all(len(w) == 1 for w, _ in best)
    assert [q for _, q in best] == pytest.approx(p[top].tolist(), abs=1e-9)


def test_a_finite_blow_up_far_above_the_uniform_guess_is_divergence_too(tmp_path):
    """A saturated tanh RNN at a huge learning rate: the loss explodes but stays finite."""
    from seqlm.errors import Diverged

    cfg = make_config(
        "train",
        [
            *SMALL_AGREEMENT,
            *TINY_TRAIN,
            "model=rnn",
            "optim=sgd",
            "optim.optimizer.lr=1000",
            "trainer.gradient_clip_val=0",
        ],
    )
    with pytest.raises(Diverged, match=r"over 3x the uniform guess, 15\.6") as e:
        train(cfg, run_dir=tmp_path)
    assert math.isfinite(e.value.loss) and e.value.loss > 3 * math.log(184)


def test_step_values_are_logged_only_on_the_steps_the_loggers_receive(tmp_path, monkeypatch):
    """No framework tax: ``self.log`` costs ~0.5% of a small model's step, so the values that
    Lightning only sends every ``log_every_n_steps`` are logged on those steps alone; the
    loss (the progress bar's figure) every step. The CSV logger shows what users get."""
    from seqlm.training.module import LitLM

    calls: dict[str, int] = {}
    real = LitLM.log

    def counting_log(self, name, *args, **kwargs):
        if self.trainer.training:
            calls[name] = calls.get(name, 0) + 1
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(LitLM, "log", counting_log)
    cfg = make_config(
        "train",
        [
            *SMALL_AGREEMENT,
            *TINY_TRAIN,
            "logger=csv",
            "trainer.max_steps=20",
            "trainer.log_every_n_steps=5",
            "+trainer.limit_val_batches=0",
        ],
    )
    train(cfg, run_dir=tmp_path, evaluate=False)
    assert calls["train/loss"] == 20
    assert calls["train/grad_norm"] == calls["train/ppl"] == 4  # steps 5, 10, 15, 20
    assert calls["train/tokens_per_s"] == 3  # a rate needs the log before it
    rows = tmp_path.rglob("metrics.csv")
    lines = next(rows).read_text().splitlines()
    header = lines[0].split(",")
    logged = [dict(zip(header, ln.split(","))) for ln in lines[1:]]
    steps = sorted({int(r["step"]) for r in logged if r.get("train/grad_norm")})
    assert steps == [4, 9, 14, 19]


def test_a_checkpoint_from_before_the_regularisers_still_loads(small_run, tmp_path):
    """Checkpoints written before AWD-LSTM's options existed load with them off."""
    out, metrics = small_run
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    for key in ("hidden_sizes", "dropoute", "dropouti", "dropouth", "dropout", "wdrop", "alpha"):
        del ckpt["hyper_parameters"]["model"][key]
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    then, now = load_scorer(old), load_scorer(out)
    assert then.describe()["model/params"] == metrics["model/params"]
    tokens = torch.arange(8)[None]
    torch.testing.assert_close(then.lit.net.eval()(tokens)[0], now.lit.net.eval()(tokens)[0])
