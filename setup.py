import pathlib
import re

from setuptools import find_packages
from setuptools import setup

HERE = pathlib.Path(__file__).parent
TENSORFLOW = ">=2.16,<2.22"


def read_requirements(name):
    """The requirement lines of a requirements file, without comments."""
    lines = (HERE / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


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
    install_requires=read_requirements("requirements.txt"),
    extras_require={
        # Exactly one TensorFlow: choose `cpu` or `gpu` (README, first command).
        "cpu": [
            f'tensorflow-cpu{TENSORFLOW}; platform_machine == "x86_64"',
            f'tensorflow{TENSORFLOW}; platform_machine != "x86_64"',
        ],
        "gpu": [f"tensorflow[and-cuda]{TENSORFLOW}"],
        "tflite": ["ai-edge-litert>=2.3"],
        # The optional HiFST variant baseline (`--method hifst-blur-detector`).
        "hifst": ["blur-detector>=0.0.6", "opencv-python-headless", "scikit-image<0.27"],
        # ai-edge-litert >= 2.3 for CompiledModel's GPU accelerator; MediaPipe
        # for the ImageSegmenter phone apps run (tests skip without them).
        "test": ["pytest>=7", "pytest-xdist>=3", "scikit-learn>=1.3", "ai-edge-litert>=2.3",
                 "mediapipe>=1.2"],
    },
    entry_points={
        "console_scripts": ["keras-defusion=keras_defusion.cli:main"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
