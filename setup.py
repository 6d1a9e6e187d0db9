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
    # optional figures; the tests check them, so "test" has it too.
    extras_require={"test": ["pytest>=9.2,<9.3", "scikit-learn>=1.9,<1.10", "pillow>=13.0,<13.1",
                             "matplotlib>=3.11,<3.12"],
                    "plots": ["matplotlib>=3.11,<3.12"]},
)
