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
    install_requires=["mindspore==2.8.0", "numpy", "pyyaml"],
    extras_require={"test": ["pytest", "scikit-learn"]},
)
