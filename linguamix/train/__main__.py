"""`python -m linguamix.train --gin_file=mixture_40shot.gin --gin.MODEL_DIR=\"/tmp/run\"`."""

from linguamix.cli import train

if __name__ == "__main__":
  train.program(train.main)
