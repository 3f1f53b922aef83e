"""The bench: one training step of every implementation side by side, populations against
runs in turn, loading the corpus.
"""
