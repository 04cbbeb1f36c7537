"""`python -m linguamix.eval --gin.CHECKPOINT_PATH=... --gin.EVAL_OUTPUT_DIR=... --gin.EVAL_TASKS=...`."""

from linguamix.train import main

if __name__ == "__main__":
  main.program(main.eval_main)
