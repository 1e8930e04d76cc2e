"""Plain ``nn.Module``s: the left-to-right ``RecurrentLM`` and the bidirectional ``ClozeLM``."""

from seqlm.models.cloze import ClozeLM
from seqlm.models.recurrent import RecurrentLM, detach_state

__all__ = ["ClozeLM", "RecurrentLM", "detach_state"]
