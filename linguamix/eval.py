"""`python -m linguamix.eval --gin.CHECKPOINT_PATH=... --gin.EVAL_OUTPUT_DIR=... --gin.EVAL_TASKS=...`."""

from linguamix.cli import train

if __name__ == "__main__":
  train.program(train.eval_main)
