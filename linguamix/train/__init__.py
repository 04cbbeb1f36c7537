"""The T5X-compatible trainer: gin entry, partitioning, optimizers, data, checkpoints, loop.

`python -m linguamix.train`, `python -m linguamix.eval`, `python -m linguamix.infer`.
One short module per job (nanodo style); none imports the others' state.
"""
