"""Analysis of finished runs: ``compare`` (every implementation from one start), seed
populations compared as distributions, ``table`` (results of run directories).
"""
