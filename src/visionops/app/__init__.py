"""The command line's application layer: what `run.py` drives (pipeline registry,
pre-flight checks, status, dashboards, stacks, backup). Nothing below imports it.
"""
