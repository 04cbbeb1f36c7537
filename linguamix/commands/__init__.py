"""The argument parsers of the `linguamix` commands whose code needs TensorFlow or JAX.

Each module builds its parser with argparse alone and imports the code it drives only
after parsing, so `--help` and usage errors answer at once (the packages it drives
register SeqIO tasks on import, which loads TensorFlow). `main(argv)` parses, then
calls `run(args)` of the module next to that code.
"""
