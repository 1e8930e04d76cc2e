"""Figures are written to files, never shown: matplotlib on its file-only backend."""

from __future__ import annotations


def pyplot():
    """matplotlib's pyplot on the file-only backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
