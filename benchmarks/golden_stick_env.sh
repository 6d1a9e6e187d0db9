#!/usr/bin/env bash
# Builds Golden Stick (mindspore-gs 1.4.1 on mindspore 2.7.1.post1, the version it supports) in its own
# virtual environment, plus a folder `shim/` whose `mindspore_slb` package (a copy of
# benchmarks/golden_stick_shim/) serves the top-level names the recipe imports from Golden Stick, for
# benchmarks/side_by_side.py:
#     bash benchmarks/golden_stick_env.sh [DIR]      # default DIR: /tmp/gs_anchor
# Golden Stick trains weight-only SLB on CPU; its converted network has no CPU kernels, so the comparison
# evaluates the quantized networks.
set -eu
DIR=${1:-/tmp/gs_anchor}
mkdir -p "$DIR"
if [ ! -x "$DIR/venv/bin/python" ]; then
  python3 -m venv "$DIR/venv"
  # mindspore-gs is installed without its declared dependencies; these are the ones its import
  # (its post-training modules import datasets and pandas) and the recipe need.
  "$DIR/venv/bin/pip" install -q mindspore==2.7.1.post1 'numpy<2' pyyaml scipy prettytable tqdm scikit-learn \
    pillow 'pandas<3' 'pyarrow<20' datasets
  "$DIR/venv/bin/pip" install -q --no-deps mindspore-gs==1.4.1
fi
# The shim is benchmarks/golden_stick_shim/ (tests/test_side_by_side.py runs the recipe through it).
mkdir -p "$DIR/shim"
rm -rf "$DIR/shim/mindspore_slb"
cp -r "$(dirname "$0")/golden_stick_shim/mindspore_slb" "$DIR/shim/"
# Every name the shim serves must exist in this Golden Stick.
"$DIR/venv/bin/python" -c "import sys; sys.path.insert(0, sys.argv[1]); import mindspore_slb" "$DIR/shim"
"$DIR/venv/bin/python" -c "import mindspore_gs; print('Golden Stick', mindspore_gs.__version__)" 2>/dev/null | tail -n 1
echo "anchor ready: python benchmarks/side_by_side.py --anchor $DIR ..."
