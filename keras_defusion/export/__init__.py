"""Exports: SavedModel for TF Serving, TFLite for phones, and the LiteRT runtimes."""
