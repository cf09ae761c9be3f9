"""Reproducible performance comparisons: ``make bench`` (see docs/performance.md)."""
