"""`python -m linguamix.eval --gin.CHECKPOINT_PATH=... --gin.EVAL_OUTPUT_DIR=... --gin.EVAL_TASKS=...`."""

import sys

from linguamix.train import run_eval

if __name__ == "__main__":
  sys.exit(run_eval.main(sys.argv[1:]))
