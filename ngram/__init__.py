"""Smoothed n-gram language models (numpy only; never imports torch or seqlm)."""
