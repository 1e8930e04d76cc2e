"""The command line: every shipped config runs, bad input gets one line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import SMALL_AGREEMENT, TINY_TRAIN, make_config, seqlm, shared

from seqlm.build import build
from seqlm.cli.overrides import quoted
from seqlm.commands.train import train
from seqlm.conf import CONF_DIR as CONF
from seqlm.conf import choices
from seqlm.errors import SeqlmError
from seqlm.scorers import load_scorer

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
# Presets that launch processes or need a GPU are composed here and run elsewhere: ddp_cpu in
# test_distributed.py (through the CLI), gpu and ddp by benchmarks/gpu_check.sh.
SLOW = pytest.mark.slow  # a case that starts Lightning in a subprocess (about 8 s each)
LAUNCHING = {("trainer", "ddp"), ("trainer", "ddp_cpu"), ("trainer", "gpu")}
GROUP_CONFIGS = sorted(
    (group.name, name)
    for group in CONF.iterdir()
    if group.is_dir() and group.name not in ("experiment", "__pycache__")
    for name in choices(group.name)
    if (group.name, name) not in LAUNCHING
)


def _data_overrides(tmp_path: Path, group: str, name: str) -> list[str]:
    """What a config needs to run on this machine (paths), and small sizes."""
    if group == "data" and name in ("ptb", "wikitext2", "hongloumeng"):
        folder = {"ptb": "ptb", "wikitext2": "wikitext-2", "hongloumeng": "hongloumeng"}[name]
        return [f"data.root={shared(folder)}"]
    if group == "data" and name == "wikitext103":  # not on these machines: its file layout
        for split in ("train", "valid", "test"):
            (tmp_path / f"wiki.{split}.tokens").write_text(" = a = \n the cat sat \n" * 200)
        return [f"data.root={tmp_path}"]
    if group == "data" and name == "text":
        f = tmp_path / "corpus.txt"
        f.write_text("".join(f"the cat {i % 7} sat on the mat\n" for i in range(300)))
        return [f"data.path={f}"]
    if group == "data" and name.startswith("agreement"):
        return ["data.sizes=[3000,600,600]"]
    return SMALL_AGREEMENT


@pytest.mark.parametrize("group, name", GROUP_CONFIGS, ids=[f"{g}={n}" for g, n in GROUP_CONFIGS])
def test_every_config_runs_one_step(group, name, tmp_path):
    overrides = [
        f"{'+' if group == 'callbacks' else ''}{group}={name}",  # not in train.yaml's defaults
        *_data_overrides(tmp_path, group, name),
        "+trainer.fast_dev_run=true",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
    ]
    if group != "logger":
        overrides.append("logger=none")
    if group != "model":
        overrides += ["model.emb_size=8", "model.hidden_size=8"]
    m = train(make_config("train", overrides), run_dir=tmp_path)
    assert m["test/tokens"] > 0 and m["test/loss"] > 0


def test_distributed_and_gpu_presets_compose():
    """What each launching preset sets by itself (nothing here is overridden)."""
    ddp = make_config("train", ["trainer=ddp"]).trainer
    assert (ddp.strategy, ddp.accelerator, ddp.devices, ddp.num_nodes) == ("ddp", "gpu", -1, 1)
    assert ddp.use_distributed_sampler is False  # seqlm shards its own streams
    cpu = make_config("train", ["trainer=ddp_cpu"]).trainer
    assert (cpu.strategy, cpu.accelerator, cpu.devices) == ("ddp", "cpu", 2)
    gpu = make_config("train", ["trainer=gpu"]).trainer
    assert (gpu.accelerator, gpu.devices, gpu.precision) == ("gpu", 1, "32-true")


def test_experiment_presets_compose():
    cfg = make_config("train", ["experiment=zaremba_small"])
    assert (cfg.model.num_layers, cfg.model.hidden_size, cfg.data.bptt) == (2, 200, 20)
    assert cfg.optim.optimizer.lr == 20.0 and cfg.trainer.gradient_clip_val == 0.25
    assert cfg.optim.scheduler.milestones[0] == 4 and "factor" not in cfg.optim.scheduler


def test_awd_lstm_presets_carry_the_published_hyperparameters():
    """awd-lstm-lm's README command lines over its main.py defaults (cited in the YAML)."""
    ptb = make_config("train", ["experiment=awd_lstm_ptb"])
    m = ptb.model
    assert (m.emb_size, list(m.hidden_sizes), m.tie_weights) == (400, [1150, 1150, 400], True)
    dropouts = (m.dropoute, m.dropouti, m.dropouth, m.dropout, m.wdrop)
    assert dropouts == (0.1, 0.4, 0.25, 0.4, 0.5)
    assert (m.alpha, m.beta) == (2.0, 1.0)
    assert (ptb.data.batch_size, ptb.data.bptt, ptb.data.variable_bptt) == (20, 70, True)
    o = ptb.optim
    assert (o.optimizer.lr, o.optimizer.weight_decay, o.nonmono) == (30.0, 1.2e-6, 5)
    assert o.scheduler is None and ptb.trainer.gradient_clip_val == 0.25 and ptb.seed == 141
    wt2 = make_config("train", ["experiment=awd_lstm_wt2"])
    assert (wt2.model.dropouti, wt2.model.dropouth, wt2.data.batch_size) == (0.65, 0.2, 80)
    assert (wt2.data.name, wt2.seed, wt2.trainer.max_epochs) == ("wikitext2", 1882, 750)
    strong = make_config("train", ["experiment=cpu_strong"])
    assert strong.trainer.max_time == "00:02:00:00"
    assert list(strong.checkpoint.at_minutes) == [30, 60, 120]


@pytest.mark.parametrize("experiment", ["awd_lstm_ptb", "awd_lstm_wt2", "cpu_strong"])
def test_regularised_presets_train_a_step(experiment, tmp_path):
    small = ["model.emb_size=8", "model.hidden_sizes=[16,8]", "model.num_layers=2"]
    overrides = [f"experiment={experiment}", "data=agreement", *SMALL_AGREEMENT, *small]
    overrides += ["+trainer.fast_dev_run=true", "logger=none", "trainer.enable_progress_bar=false"]
    m = train(make_config("train", overrides), run_dir=tmp_path)
    assert m["test/tokens"] > 0 and 0 < m["test/loss"] < 10


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One real run through the CLI (Hydra run dir and all)."""
    work = tmp_path_factory.mktemp("cli")
    r = seqlm("train", *SMALL_AGREEMENT, *TINY_TRAIN, "hydra.run.dir=run", cwd=work)
    assert r.returncode == 0, r.stderr[-2000:]
    return work, work / "run", r


@pytest.mark.slow
def test_cli_train_writes_run_dir_and_prints_a_summary(cli_run):
    work, run, r = cli_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"{metrics['test/ppl']:.4f}" in r.stdout
    assert "agreement by distance" in r.stdout


@pytest.mark.slow
def test_cli_score_generate_fill(cli_run):
    work, run, _ = cli_run
    (work / "nbest.txt").write_text("the dogs sleep\nthe dogs sleeps\nthe dogs sleeps sleeps\n")
    r = seqlm("score", f"ckpt={run}", "input=nbest.txt", cwd=work)
    assert r.returncode == 0, r.stderr
    rows = [ln.split("\t") for ln in r.stdout.strip().splitlines()[1:]]
    assert [int(x[0]) for x in rows] == [1, 2, 3]
    assert [float(x[2]) for x in rows] == sorted((float(x[2]) for x in rows), reverse=True)
    r = seqlm("generate", f"ckpt={run}", "prompt=the dogs", "num_samples=2", "seed=3", cwd=work)
    assert r.returncode == 0 and r.stdout.count("the dogs") == 2
    again = seqlm("generate", f"ckpt={run}", "prompt=the dogs", "num_samples=2", "seed=3", cwd=work)
    assert again.stdout == r.stdout  # seeded
    to_file = seqlm(
        "generate",
        f"ckpt={run}",
        "prompt=the dogs",
        "num_samples=2",
        "seed=3",
        "out=s.txt",
        cwd=work,
    )
    assert to_file.returncode == 0 and "2 samples written to s.txt" in to_file.stdout
    assert (work / "s.txt").read_text() == r.stdout  # the same samples, one a line
    r = seqlm("fill", f"ckpt={run}", "text=the dogs ___ the cat", "top_k=3", cwd=work)
    assert r.returncode == 0 and len(r.stdout.strip().splitlines()) == 3
    printed = [
        (ln.split("\t")[1].split()[2], float(ln.split("\t")[0])) for ln in r.stdout.splitlines()
    ]
    # the same blank by hand: every word's whole-sentence probability, normalised over the
    # vocabulary without <unk> and <eos>
    scorer = load_scorer(run)
    ids = scorer.vocab.encode
    whole = scorer.sentence_logprobs(
        [[*ids(["the", "dogs"]), w, *ids(["the", "cat"])] for w in range(len(scorer.vocab))]
    )
    whole[:2] = -np.inf
    p = np.exp(whole - whole.max())
    p /= p.sum()
    top = np.argsort(-p)[:3]
    assert [w for w, _ in printed] == [scorer.vocab.itos[i] for i in top]
    assert [q for _, q in printed] == pytest.approx(p[top].tolist(), abs=1e-4)  # 4 decimals


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["train", "model=lstmm"],
            "model='lstmm' is not one of birnn, deep_rnn, gru, kn2, kn3, kn4, kn5, lstm, mingru, "
            "minlstm, mogrifier, ngram, rnn",
        ),
        (["train", "-m", "data=agreement,ptbb"], "data='ptbb' is not one of"),
        pytest.param(
            ["train", "data=text", "data.path=missing.txt"], "missing.txt: no such file", marks=SLOW
        ),
        (
            ["train", "model.cell=lstmm"],
            "model.cell='lstmm' is not one of rnn, lstm, gru, mogrifier, mingru, minlstm",
        ),
        pytest.param(
            ["eval", "ckpt=nowhere"], "ckpt='nowhere': no such file or run directory", marks=SLOW
        ),
        pytest.param(["eval", "ckpt=junk.ckpt"], "junk.ckpt': not a seqlm checkpoint", marks=SLOW),
        (["frobnicate"], "unknown command 'frobnicate'"),
        pytest.param(
            ["train", "-m", "model=rnn,gru", "trainer=ddp_cpu", "logger=none"],
            "trainer.strategy=ddp with -m",
            marks=SLOW,
        ),
        pytest.param(
            ["train", "checkpoint.every_n_steps=-5"],
            "checkpoint.every_n_steps=-5 must be",
            marks=SLOW,
        ),
        (["compare", "nowhere"], "nowhere: no metrics.json"),
        (
            ["train", "model.hiden_size=10"],
            "model.hiden_size: no such key; did you mean model.hidden_size?",
        ),
        (
            ["train", "+model.hiden_size=10"],
            "+model.hiden_size: seqlm.models.RecurrentLM takes no option 'hiden_size'; did you "
            "mean model.hidden_size?",
        ),
        (
            ["train", "model.hidden_size=abc"],
            "model.hidden_size='abc': expected an integer",
        ),
        (
            ["train", "model=kn3", "model.orde=5"],
            "model.orde: no such key; did you mean model.order?",
        ),
        (["train", "model=kn3", "model.dropoute=0.1"], "model.dropoute=0.1: regularisers and"),
        (["train", "model=kn2", "+model.wdrop=0.5"], "model=kn2 is an n-gram model"),
        (["train", "model=ngram", "optim=nt_asgd"], "optim=nt_asgd: regularisers and NT-ASGD"),
        pytest.param(
            ["eval", "ckpt=m.npz", "arpa_unk=unk"], "arpa_unk='unk' is for ARPA files", marks=SLOW
        ),
    ],
)
def test_bad_input_one_line_exit_2(args, message, tmp_path):
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    (tmp_path / "m.npz").write_bytes(b"")
    r = seqlm(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-1500:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("seqlm: error:") and message in lines[-1], r.stderr[-1500:]
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("outputs/*/*")), "a command that never ran left a run directory"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optim.optimizer.lr=fast"], "optim.optimizer.lr='fast': expected a number"),
        (
            ["trainer.max_epochs=many"],
            "trainer.max_epochs='many': expected an integer or null (pytorch_lightning.Trainer",
        ),
        (["+trainer.no_such_option=1"], "trainer.no_such_option=1: pytorch_lightning.Trainer"),
        (
            ["optim=sgd", "optim.scheduler.factor=half"],
            "optim.scheduler.factor='half': expected a number",
        ),
        (
            ["logger=csv", "+logger.csv.flush_logs_every_n_steps=often"],
            "logger.csv.flush_logs_every_n_steps='often': expected an integer (pytorch_lightning",
        ),
        (["+callbacks.stop._target_=no.such.Callback"], "callbacks.stop: no.such.Callback"),
    ],
)
def test_values_only_torch_or_lightning_check_are_named_in_one_line(overrides, message, tmp_path):
    """What torch, Lightning or a logger refuse while being built becomes one SeqlmError that
    names the config key and its value (the CLI prints it as one line, exit 2)."""
    cfg = make_config("train", [*SMALL_AGREEMENT, *TINY_TRAIN, *overrides])
    with pytest.raises(SeqlmError) as e:
        train(cfg, run_dir=tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_bad_input_about_a_run(cli_run):
    work, run, _ = cli_run
    (work / "latin1.txt").write_bytes(b"caf\xe9\n")
    cases = [
        (["score", f"ckpt={run}", "input=latin1.txt"], "latin1.txt: not UTF-8"),
        (["generate", f"ckpt={run}", "prompt=zzz qqq"], "prompt: every word is outside"),
        (["fill", f"ckpt={run}", "text=the dogs sleep"], "must hold exactly one ___ blank"),
        # the same corpus with another seed builds the same words in another order
        (
            ["eval", f"ckpt={run}", "data=agreement", "data.sizes=[600,300,300]"],
            "scores across vocabularies are not comparable",
        ),
    ]
    for args, message in cases:
        r = seqlm(*args, cwd=work)
        assert r.returncode == 2, (args, r.stderr[-1500:])
        assert message in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.stderr


def test_values_the_shell_unquoted_reach_the_command_as_typed():
    """The shell eats the quotes of arpa_unk='<ptb-unk>'; Hydra's grammar cannot read
    ``<ptb-unk>`` or ``宝玉道`` bare. They are quoted for it, and nothing else is touched."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = ["arpa_unk=<ptb-unk>", "prompt=宝玉道", "text=it's <here>", "model=lstm", "ckpt=[a,b]"]
    fixed = quoted(args)
    assert fixed[3:] == args[3:]
    parsed = OverridesParser.create().parse_overrides(fixed[:3])
    assert [o.value() for o in parsed] == ["<ptb-unk>", "宝玉道", "it's <here>"]
    cfg = make_config("generate", ["ckpt=run", fixed[1]])
    assert cfg.prompt == "宝玉道"


def test_help_pages_list_the_commands_and_each_commands_keys_without_torch(tmp_path):
    r = seqlm("--help", cwd=tmp_path)
    assert r.returncode == 0
    for command in ("train", "eval", "rescore", "mix"):
        assert f"\n  {command} " in r.stdout
    code = (
        "import sys; from seqlm.__main__ import main; main(['eval', '--help']); "
        "assert 'torch' not in sys.modules and 'pytorch_lightning' not in sys.modules"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1500:]
    assert "tokens_out: null" in r.stdout and "data: agreement" in r.stdout
    assert "python -m seqlm eval ckpt=RUN_DIR" in r.stdout and "Hydra" not in r.stdout


def test_debug_true_shows_the_traceback(tmp_path):
    r = seqlm("eval", "ckpt=nowhere", "debug=true", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr and "SeqlmError" in r.stderr


def test_wandb_sweep_file_drives_the_cli_with_composable_overrides():
    import yaml

    sweep = yaml.safe_load((SWEEPS / "ptb_rnns.yaml").read_text())
    assert sweep["command"][2:5] == ["-m", "seqlm", "train"]
    assert sweep["command"][-1] == "${args_no_hyphens}"
    fixed = [c for c in sweep["command"][5:-1]]
    for key, spec in sweep["parameters"].items():
        value = spec["values"][-1] if "values" in spec else spec["min"]
        cfg = make_config("train", [*fixed, f"{key}={value}"])  # Hydra refuses unknown keys
        net = build("model", cfg.model, vocab_size=11)  # and the value builds a network
        assert sum(p.numel() for p in net.parameters()) > 0


def test_smoke_is_a_short_trial_of_any_preset_named_after_its_experiment(tmp_path):
    """``smoke=true``: 20 steps, a validation at the end (so the best checkpoint exists and is
    the one tested), 10 batches of validation and test, the figures marked; the run directory
    carries the experiment's name."""
    r = seqlm(
        "train", "experiment=zaremba_small", "data=agreement", "data.sizes=[3000,600,20000]",
        "smoke=true", "logger=none", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-1500:]
    assert "smoke trial: 20 steps" in r.stdout
    [run] = tmp_path.glob("outputs/*/*_zaremba_small")
    m = json.loads((run / "metrics.json").read_text())
    assert m["smoke"] is True and m["train/steps"] == 20
    assert m["checkpoint"].endswith("best.ckpt")
    cfg = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert m["test/tokens"] == 10 * cfg["eval_batch_size"] * cfg["bptt"]  # 10 batches
    assert "could not find the monitored key" not in r.stderr


def test_a_run_without_validation_says_what_it_tests_instead_of_lightnings_warnings(tmp_path):
    r = seqlm(
        "train", "model=gru", "logger=none", "data.sizes=[3000,600,600]", "model.hidden_size=8",
        "model.emb_size=8", "+trainer.limit_val_batches=0", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-1500:]
    assert (
        "no validation (limit_val_batches=0): the learning rate stays where it starts" in r.stdout
    )
    assert "no validation ran, so no best checkpoint: testing " in r.stdout
    assert "last.ckpt" in r.stdout and "val/ppl_floor" not in r.stdout
    for lightning in ("could not find the monitored key", "ReduceLROnPlateau conditioned"):
        assert lightning not in r.stderr
