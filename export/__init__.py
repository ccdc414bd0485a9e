"""Command-line exporters of DeFusionNet, run from a clone.

    python -m export.saved_model --model model.keras --out serving/
    python -m export.tflite --model model.keras --mode int8 --out model.tflite \\
        --calibration ../shared/data/CUHK/train/images

The work is done by `keras_defusion.export.tflite`.
"""
