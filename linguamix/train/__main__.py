"""`python -m linguamix.train --gin_file=mixture_40shot.gin --gin.MODEL_DIR=\"/tmp/run\"`."""

import sys

from linguamix.train import main

if __name__ == "__main__":
  sys.exit(main.main(sys.argv[1:]))
