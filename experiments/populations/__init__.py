"""Populations: many runs (seeds x learning rates x thetas) as one program in JAX, or one after
another, with their aggregate summary.
"""
