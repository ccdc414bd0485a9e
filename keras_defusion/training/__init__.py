"""Training DeFusionNet: config, data sets, the fit and multi-worker loops, run folders."""
