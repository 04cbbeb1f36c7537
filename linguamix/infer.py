"""`python -m linguamix.infer --gin.CHECKPOINT_PATH=... --gin.INFER_OUTPUT_DIR=... --gin.MIXTURE_OR_TASK_NAME=...`."""

from linguamix.cli import train

if __name__ == "__main__":
  train.program(train.infer_main)
