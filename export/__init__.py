"""Command-line exporters of DeFusionNet, run from a clone.

    python -m export.saved_model --model model.keras --out serving/
    python -m export.tflite --model model.keras --mode int8 --out model.tflite \\
        --calibration ../shared/data/CUHK/train/images

The same commands as `keras-defusion export saved_model|tflite`
(`keras_defusion.cli.export`), over the library `keras_defusion.export`.
"""
