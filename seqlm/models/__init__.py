"""Plain ``nn.Module``s: the left-to-right ``RecurrentLM`` and the bidirectional ``ClozeLM``."""

from hydra.utils import get_class

from seqlm.models.cloze import ClozeLM
from seqlm.models.recurrent import RecurrentLM, detach_state


def layout_of(model_cfg) -> str:
    """How the network of a ``model`` config reads its data: ``stream`` or ``sentences``."""
    return get_class(model_cfg["_target_"]).layout


__all__ = ["ClozeLM", "RecurrentLM", "detach_state", "layout_of"]
