"""Shared fixtures: an isolated data cache, the real corpora in ../shared/data, composed configs."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Tiny but real: the built-in corpus at a few thousand tokens trains in a second or two.
SMALL_AGREEMENT = ["data.sizes=[6000,1500,1500]", "data.batch_size=8", "data.bptt=20"]
# Two short epochs of a small LSTM with dropout (so an exact resume must restore the RNG too).
RESUMABLE = [
    "data.sizes=[6000,1000,1000]",
    "data.batch_size=4",
    "data.bptt=10",
    "model.emb_size=16",
    "model.hidden_size=16",
    "model.out_dropout=0.3",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
]
TINY_TRAIN = [
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "logger=none",
    "model.emb_size=16",
    "model.hidden_size=16",
]


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Downloads and id caches go to a temporary folder, never to the user's ~/.cache."""
    old = os.environ.get("SEQLM_DATA")
    os.environ["SEQLM_DATA"] = str(tmp_path_factory.mktemp("seqlm-cache"))
    yield
    if old is None:
        os.environ.pop("SEQLM_DATA", None)
    else:
        os.environ["SEQLM_DATA"] = old


@pytest.fixture(autouse=True, scope="session")
def _offline_wandb(tmp_path_factory):
    """W&B never reaches the network in tests, and keeps its settings and caches aside."""
    keep = {k: os.environ.get(k) for k in WANDB_ENV}
    base = tmp_path_factory.mktemp("wandb")
    os.environ.update({k: str(base / k.lower()) for k in WANDB_ENV if k != "WANDB_MODE"})
    os.environ["WANDB_MODE"] = "offline"
    yield
    for k, v in keep.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


WANDB_ENV = ("WANDB_MODE", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR")


def shared(name: str) -> Path:
    """A corpus folder in ../shared/data. Missing data fails under CI and skips elsewhere."""
    path = SHARED_DATA / name
    if not path.is_dir():
        msg = f"{path} is missing (the real corpora live in ../shared/data beside the checkout)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def optional(module: str):
    """An optional dependency's module (an extra of pyproject.toml). Missing, it fails under CI,
    which installs every extra, and skips elsewhere."""
    try:
        return importlib.import_module(module)
    except ImportError:
        msg = f"{module} is not installed (pip install -e '.[dev]' brings it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)


def make_config(name: str = "train", overrides: list[str] | None = None) -> DictConfig:
    """A config composed the way the CLI composes it."""
    with initialize_config_module("seqlm.conf", version_base="1.3"):
        return compose(name, overrides=overrides or [])


HELPERS = Path(__file__).resolve().parent / "helpers"
sys.path.insert(0, str(HELPERS))  # tests import helpers (the W&B file reader) by name


def preset(group: str, name: str, /, **overrides):
    """What the shipped preset ``group=name`` builds, with ``overrides`` on top (a network
    needs ``vocab_size``): tests make models and data modules this way, so that the YAML stays
    the one source of defaults."""
    from omegaconf import OmegaConf

    from seqlm.build import build

    node = make_config("train", [f"{group}={name}"])[group]
    OmegaConf.set_struct(node, False)
    node.merge_with(overrides)
    return build(group, node, _convert_="all")


def seqlm(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """``python -m seqlm ARGS`` in a subprocess, as a user runs it. ``env`` replaces the
    environment (default: this one); tests/helpers is importable, for ``+callbacks``."""
    return python_m("seqlm", *args, cwd=cwd, env=env, timeout=timeout)


def python_m(
    module: str,
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: int = 300,
    stdin: str | None = None,
) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` in a subprocess (``seqlm``, ``ngram``), ``stdin`` its input."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(HELPERS), env.get("PYTHONPATH", "")])
    env["PYTHONWARNINGS"] = "ignore"
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests skip cleanly where torch sees no CUDA device (as lightning-hydra-template's
    ``RunIf``)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
