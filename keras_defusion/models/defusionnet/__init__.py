"""DeFusionNet (Tang et al., CVPR 2019): config, presets, encoder, layers, head, model."""
