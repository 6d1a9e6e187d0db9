from setuptools import find_packages, setup

with open("README.md", encoding="utf-8") as readme:
    long_description = readme.read()

setup(
    name="mindspore_slb",
    version="0.1.0",
    description="SLB (Searching for Low-bit Weights) quantization for MindSpore, Golden Stick compatible, CPU and GPU",
    long_description=long_description,
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mindspore_slb", "mindspore_slb.*"]),
    package_data={"mindspore_slb.native": ["*.cc"]},
    python_requires=">=3.11",
    # Ranges that were tested (constraints.txt holds the exact versions). mindspore 2.9 and later
    # run CPU convolutions about 20x slower; 2.8.0 requires numpy < 2.
    install_requires=["mindspore==2.8.0", "numpy>=1.26,<1.27", "pyyaml>=6.0,<6.1"],
    # scikit-learn carries the digits data set the demo and the recipe tests use; pillow writes
    # the tests' image files (it also comes with mindspore). matplotlib draws the recipe's
    # optional figures; onnx writes the ONNX exports (save_onnx) and onnxruntime runs them; the
    # tests check both, so "test" has them too. onnx 1.23 and onnxruntime 1.32 ship Python 3.11
    # wheels and work with numpy 1.26 and the protobuf mindspore brings.
    extras_require={"test": ["pytest>=9.2,<9.3", "scikit-learn>=1.9,<1.10", "pillow>=13.0,<13.1",
                             "matplotlib>=3.11,<3.12", "onnx>=1.23,<1.24", "onnxruntime>=1.32,<1.33"],
                    "plots": ["matplotlib>=3.11,<3.12"],
                    "onnx": ["onnx>=1.23,<1.24", "onnxruntime>=1.32,<1.33"]},
)
