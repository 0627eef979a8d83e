"""Extraction scripts for the public source data shipped in ``etl/data``."""
