"""Gin files. gin-config 0.5.0 needs an __init__.py in every folder holding .gin files."""
