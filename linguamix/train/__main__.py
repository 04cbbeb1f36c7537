"""`python -m linguamix.train --gin_file=mixture_40shot.gin --gin.MODEL_DIR=\"/tmp/run\"`."""

from linguamix.train import main

if __name__ == "__main__":
  main.program(main.main)
