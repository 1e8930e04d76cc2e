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
