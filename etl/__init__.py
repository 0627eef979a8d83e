"""Readers, writers, the demo-city builder and the command line."""
