"""`python -m linguamix.infer --gin.CHECKPOINT_PATH=... --gin.INFER_OUTPUT_DIR=... --gin.MIXTURE_OR_TASK_NAME=...`."""

import sys

from linguamix.train import run_infer

if __name__ == "__main__":
  sys.exit(run_infer.main(sys.argv[1:]))
