"""Hydra configs of the console scripts, shipped in the wheel as ``glacier.configs``."""
