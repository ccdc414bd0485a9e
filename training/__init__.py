"""Training DeFusionNet: run from a clone as `python -m training.train`."""
