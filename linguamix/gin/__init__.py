"""Gin files. gin-config 0.5.0 needs an __init__.py in every folder holding .gin files."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parent  # searched for every gin file and include
