"""Hydra's config root, shipped inside the package; every folder in it is a config group."""

from pathlib import Path

CONF_DIR = Path(__file__).parent


def is_group(key: str) -> bool:
    """Whether ``key`` of an override (``key=value``) names a config group."""
    return "." not in key and (CONF_DIR / key).is_dir()
