import pathlib
import re

from setuptools import find_packages
from setuptools import setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"',
    (HERE / "keras_defusion" / "version.py").read_text(),
).group(1)

setup(
    name="keras-defusion",
    version=VERSION,
    description="DeFusionNet defocus blur detection for TensorFlow/Keras",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_defusion", "keras_defusion.*"]),
    package_data={"keras_defusion": ["assets/*/*"]},
    install_requires=[
        'tensorflow-cpu>=2.16,<2.22; platform_machine == "x86_64"',
        'tensorflow>=2.16,<2.22; platform_machine != "x86_64"',
        "keras>=3.3,<4",
        "tensorboard>=2.16",
        "numpy>=1.26",
        "h5py>=3.10",
        "pillow>=10",
        "scikit-image>=0.22",
        "scipy>=1.11",
        "matplotlib>=3.7",
        "tqdm>=4.60",
    ],
    extras_require={
        # CUDA wheels. Both tensorflow and tensorflow-cpu install the same
        # `tensorflow` package: on a GPU machine `pip uninstall tensorflow-cpu`
        # first (see README, Development).
        "gpu": ["tensorflow[and-cuda]>=2.16,<2.22"],
        "tflite": ["ai-edge-litert>=1.2"],
        # The optional HiFST variant baseline (`--method hifst-blur-detector`).
        "hifst": ["blur-detector>=0.0.6", "opencv-python-headless", "scikit-image<0.27"],
        "test": ["pytest>=7", "scikit-learn>=1.3", "ai-edge-litert>=1.2"],
    },
    entry_points={
        "console_scripts": ["keras-defusion=keras_defusion.cli:main"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
