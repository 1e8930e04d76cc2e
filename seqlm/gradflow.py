"""The old home of ``seqlm.analysis.gradflow``: run configs saved before it moved name
``seqlm.gradflow.GradientFlow`` as a callback's ``_target_``, and still load."""

from seqlm.analysis.gradflow import GradientFlow, gradient_norms, summary, windows_of

__all__ = ["GradientFlow", "gradient_norms", "summary", "windows_of"]
