#!/usr/bin/env bash
# GPU checks, for a machine with an NVIDIA GPU that MindSpore 2.8.0's GPU plugin can use
# (it is built for CUDA 11.x): the device-independent tests on the GPU (the fused kernel is CPU
# only, so its tests are left out), then both benchmarks on the GPU. Results land in $OUT_DIR.
#
#     bash scripts/gpu_check.sh            # after make test's install, in the same environment
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-gpu_check}
mkdir -p "$OUT_DIR"
python -c "import mindspore as ms, sys; ms.hal.is_available('GPU') or sys.exit('MindSpore sees no GPU here')"
MINDSPORE_SLB_TEST_DEVICE=GPU python -m pytest -q -k "not fused" \
    tests/test_quantizer.py tests/test_apply.py tests/test_convert.py tests/test_act_quant.py \
    tests/test_bn_calibration.py tests/test_learning.py tests/test_callbacks.py 2>&1 | tee "$OUT_DIR/tests.log"
python benchmarks/benchmark.py --device_target GPU --json "$OUT_DIR/benchmark.json" 2>&1 | tee "$OUT_DIR/benchmark.log"
python benchmarks/recipe_benchmark.py --device_target GPU --paths plain \
    --json "$OUT_DIR/recipe_benchmark.json" 2>&1 | tee "$OUT_DIR/recipe_benchmark.log"
