"""`linguamix prepare`: the studies' real datasets, benchmarks and checkpoints in one command.

linguamix/cli/prepare.py (the command), jobs.py (one output = fetch + convert + record), hub.py
(huggingface_hub), store.py (the data root and its record), formats.py (conversions),
instruction_data.py / benchmark_data.py (the Hub layouts relied on, as tables),
base_checkpoints.py (`model`, `t5x`), check.py (read back with the tasks' loaders).
"""
