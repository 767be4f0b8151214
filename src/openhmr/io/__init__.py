"""Readers and writers for external file formats (checkpoints, model files)."""
