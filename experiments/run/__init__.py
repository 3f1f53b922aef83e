"""The run machinery: one run from its flags to its run directory (config, flags, the backends,
the runner, the run directory and its records, plots, signals, process-wide settings, the command
line's exit codes).
"""
