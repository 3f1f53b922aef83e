"""The book's sections as commands: ``python -m experiments.<section>`` runs one run, or a
population, per iteration scheme.
"""
