"""DeFusionNet (Tang et al., CVPR 2019): config, encoder, layers and model."""
