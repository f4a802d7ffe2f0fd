"""Datasets that ship with packages (no download): real labeled images for demos and tests."""
