"""Measurement probes that are not product: run from the repository root as
``python -m tools.<probe>``; not installed with the package (docs/performance.md cites them)."""
