"""The study kit: gradient checks (``gradcheck``), the gradient's flow through time
(``gradient_flow``) and the corpus's statistics (``corpus_stats``).
"""
