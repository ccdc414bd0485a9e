"""The models: DeFusionNet and the shipped, trained ones."""
