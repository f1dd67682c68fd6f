"""The bottom layer: environment, names, image bytes, files, processes, console.

Nothing here knows a task, a dataset or a model; every other part may import it.
"""
