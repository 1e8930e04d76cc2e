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


def preset_target(group: str, name: str) -> str | None:
    """The ``_target_`` that ``group=name`` builds (through the presets it is built on), or
    ``None`` for no such preset."""
    from omegaconf import OmegaConf

    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        return None
    node = OmegaConf.load(path)
    if "_target_" in node:
        return str(node._target_)
    bases = [b for b in node.get("defaults", []) if isinstance(b, str) and b != "_self_"]
    return next((t for b in bases if (t := preset_target(group, b)) is not None), None)
