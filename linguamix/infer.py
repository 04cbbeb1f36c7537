"""`python -m linguamix.infer --gin.CHECKPOINT_PATH=... --gin.INFER_OUTPUT_DIR=... --gin.MIXTURE_OR_TASK_NAME=...`."""

from linguamix.train import main

if __name__ == "__main__":
  main.program(main.infer_main)
