"""Hydra's config root, shipped inside the package; every folder in it is a config group.
A file whose name starts with ``_`` (``data/_base.yaml``) is a base that presets inherit, not
a choice of its own."""

from pathlib import Path

CONF_DIR = Path(__file__).parent


def is_group(key: str) -> bool:
    """Whether ``key`` of an override (``key=value``) names a config group."""
    return "." not in key and (CONF_DIR / key).is_dir()


def choices(group: str) -> list[str]:
    """The presets a user can pick in ``group``."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


def is_ngram_preset(name: str) -> bool:
    """Whether ``model=name`` is an n-gram model (its preset targets the ``ngram`` package)."""
    from omegaconf import OmegaConf

    path = CONF_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        return False
    node = OmegaConf.load(path)
    if "_target_" in node:
        return str(node._target_).startswith("ngram.")
    bases = [b for b in node.get("defaults", []) if isinstance(b, str) and b != "_self_"]
    return any(is_ngram_preset(b) for b in bases)  # a preset built on another one
