import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "keras_ssd" / "version.py").read_text()
).group(1)

setup(
    name="keras-ssd",
    version=VERSION,
    description="SSD (Single Shot MultiBox Detector) for Keras 3: exact SSD300/SSD512, "
    "serializable layers, VOC/COCO data, mAP evaluation and a CLI.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    license_files=["LICENSE"],
    python_requires=">=3.10",
    packages=find_packages(include=["keras_ssd", "keras_ssd.*"]),
    install_requires=[
        "keras>=3.8",
        "tensorflow>=2.16",
        "numpy>=1.26",
        "pillow>=10.0",
        "pyyaml>=6.0",
        "defusedxml>=0.7",
    ],
    extras_require={
        "test": ["pytest>=7.4", "pytest-timeout>=2.2", "pytest-xdist>=3.5", "hypothesis>=6.100", "matplotlib>=3.7",
                 "pycocotools>=2.0.7", "jax>=0.4.30", "av>=12.0"],
        "plot": ["matplotlib>=3.7"],
        # video files and cameras for `keras-ssd predict` (docs/video.md says why PyAV)
        "video": ["av>=12.0"],
        # the logs/ folder a training run writes for TensorBoard
        "tensorboard": ["tensorboard>=2.16"],
        "coco": ["pycocotools>=2.0.7", "jax>=0.4.30"],
        "export": ["tf2onnx>=1.17", "onnxruntime>=1.17", "onnx>=1.15"],
        "jax": ["jax>=0.4.30"],
        # benchmarks/learning.py builds its datasets from scikit-image's and scikit-learn's
        # sample photos (and scikit-learn's digits)
        "bench": ["scikit-image>=0.22", "scikit-learn>=1.3"],
    },
    entry_points={"console_scripts": ["keras-ssd=keras_ssd.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
