"""mindspore_slb's top-level names the recipe uses, served by Golden Stick (for side-by-side comparisons only).

benchmarks/golden_stick_env.sh copies this package into DIR/shim; a Golden Stick worker of
benchmarks/side_by_side.py imports it before the repository's own mindspore_slb. The recipe imports
top-level names only, so this file is all a Golden Stick run needs of "mindspore_slb".
"""
from mindspore.common.dtype import QuantDtype
# Golden Stick trains its logits with the plain optimizer: it has no fused update.
from mindspore.nn import Momentum as SlbMomentum
from mindspore_gs import SlbQuantAwareTraining as GoldenStickSlbQuantAwareTraining
from mindspore_gs.quantization.slb.slb_fake_quantizer import SlbFakeQuantizerPerLayer

WEIGHT_DTYPES = {1: QuantDtype.INT1, 2: QuantDtype.INT2, 4: QuantDtype.INT4}


class SlbQuantAwareTraining(GoldenStickSlbQuantAwareTraining):
    """Golden Stick's algorithm with what the recipe calls beyond it."""

    def check_schedule(self):
        """Golden Stick has no check of its schedule before apply: nothing to do."""


class SlbQuantLayer:  # pylint: disable=too-few-public-methods
    """Golden Stick has no layer of this package's type: the recipe finds no searched layer in its
    networks, so it reports no decidedness and draws no per-layer figures."""
