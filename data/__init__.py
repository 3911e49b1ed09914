"""Bundled glacier data, shipped in the wheel as ``glacier.data`` (see README.md here)."""
