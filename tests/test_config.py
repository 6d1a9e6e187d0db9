"""Configuration and setters follow Golden Stick's contract, with stricter checks."""
import importlib

import pytest
from mindspore.common.dtype import QuantDtype as MindSporeQuantDtype

import mindspore_slb
from mindspore_slb import QuantDtype, SlbQuantAwareTraining


def test_defaults_and_repr_show_whole_configuration():
    text = repr(SlbQuantAwareTraining())
    for shown in ("weight_quant_dtype=QuantDtype.INT1", "act_quant_dtype=QuantDtype.INT8",
                  "enable_act_quant=False", "enable_bn_calibration=False", "epoch_size=None",
                  "has_trained_epoch=None", "t_start_val=1.0", "t_start_time=0.2", "t_end_time=0.6",
                  "t_factor=1.2"):
        assert shown in text


def test_config_dict_sets_every_key():
    algo = SlbQuantAwareTraining({"quant_dtype": [QuantDtype.INT8, QuantDtype.INT4], "enable_act_quant": True,
                                  "enable_bn_calibration": True, "epoch_size": 10, "has_trained_epoch": 3,
                                  "t_start_val": 2.0, "t_start_time": 0.1, "t_end_time": 0.9, "t_factor": 1.5})
    text = repr(algo)
    for shown in ("weight_quant_dtype=QuantDtype.INT4", "enable_act_quant=True", "enable_bn_calibration=True",
                  "epoch_size=10", "has_trained_epoch=3", "t_start_val=2.0", "t_start_time=0.1",
                  "t_end_time=0.9", "t_factor=1.5"):
        assert shown in text


def test_single_quant_dtype_is_the_weight_dtype():
    assert "weight_quant_dtype=QuantDtype.INT2" in repr(SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT2}))


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match="'epoch_sizes'"):
        SlbQuantAwareTraining({"epoch_sizes": 10})


def test_config_must_be_a_dict():
    with pytest.raises(TypeError, match="'config'"):
        SlbQuantAwareTraining([("epoch_size", 10)])


@pytest.mark.parametrize("setter, value, error, words", [
    ("set_weight_quant_dtype", QuantDtype.INT8, ValueError, "INT1, QuantDtype.INT2, QuantDtype.INT4"),
    ("set_weight_quant_dtype", 2, TypeError, "QuantDtype"),
    ("set_act_quant_dtype", QuantDtype.INT4, ValueError, "QuantDtype.INT8"),
    ("set_enable_act_quant", 1, TypeError, "bool"),
    ("set_enable_bn_calibration", "yes", TypeError, "bool"),
    ("set_epoch_size", 0, ValueError, ">= 1"),
    ("set_epoch_size", 10.0, TypeError, "int"),
    ("set_epoch_size", True, TypeError, "int"),
    ("set_has_trained_epoch", -1, ValueError, ">= 0"),
    ("set_has_trained_epoch", False, TypeError, "int"),
    ("set_t_start_val", 0.0, ValueError, "> 0"),
    ("set_t_start_val", 1, TypeError, "float"),
    ("set_t_start_val", float("inf"), ValueError, "> 0"),
    ("set_t_start_time", 1.5, ValueError, r"\[0.0, 1.0\]"),
    ("set_t_start_time", 0, TypeError, "float"),
    ("set_t_end_time", -0.1, ValueError, r"\[0.0, 1.0\]"),
    ("set_t_end_time", float("nan"), ValueError, r"\[0.0, 1.0\]"),
    ("set_t_factor", -1.2, ValueError, "> 0"),
    ("set_t_factor", "1.2", TypeError, "float"),
])
def test_setters_reject_bad_values_naming_parameter_and_value(setter, value, error, words):
    name = setter[len("set_"):]
    with pytest.raises(error, match=f"'{name}'.*{words}|{words}.*'{name}'") as raised:
        getattr(SlbQuantAwareTraining(), setter)(value)
    assert repr(value).strip("'") in str(raised.value) or getattr(value, "name", "") in str(raised.value)


def test_config_values_are_validated_like_setters():
    with pytest.raises(TypeError, match="'t_factor'"):
        SlbQuantAwareTraining({"t_factor": 2})
    with pytest.raises(ValueError, match="'quant_dtype'"):
        SlbQuantAwareTraining({"quant_dtype": [QuantDtype.INT8]})
    # The key the user wrote, and which part of it is wrong: the pair's order swapped, a weight width SLB lacks.
    with pytest.raises(ValueError, match=r"'quant_dtype' .*its activation dtype .*got QuantDtype.INT1"):
        SlbQuantAwareTraining({"quant_dtype": [QuantDtype.INT1, QuantDtype.INT8]})
    with pytest.raises(ValueError, match=r"'quant_dtype' .*its weight dtype .*got QuantDtype.INT3"):
        SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT3})
    with pytest.raises(TypeError, match=r"'quant_dtype' .*its weight dtype .*got 'INT2' of type str"):
        SlbQuantAwareTraining({"quant_dtype": [QuantDtype.INT8, "INT2"]})


def test_boundaries_are_accepted():
    algo = SlbQuantAwareTraining()
    algo.set_t_start_time(0.0)
    algo.set_t_end_time(1.0)
    algo.set_has_trained_epoch(0)
    algo.set_epoch_size(1)
    for dtype in (QuantDtype.INT1, QuantDtype.INT2, QuantDtype.INT4):
        algo.set_weight_quant_dtype(dtype)


def test_quant_dtype_is_mindsporess_own_enum():
    constant = importlib.import_module("mindspore_slb.quantization.constant")
    assert QuantDtype is MindSporeQuantDtype is constant.QuantDtype
    SlbQuantAwareTraining({"quant_dtype": MindSporeQuantDtype.INT2})


def test_golden_stick_import_paths():
    slb = importlib.import_module("mindspore_slb.quantization.slb")
    fake = importlib.import_module("mindspore_slb.quantization.slb.slb_fake_quantizer")
    quant = importlib.import_module("mindspore_slb.quantization.slb.slb_quant")
    assert slb.SlbQuantAwareTraining is mindspore_slb.SlbQuantAwareTraining
    assert fake.SlbFakeQuantizerPerLayer is mindspore_slb.SlbFakeQuantizerPerLayer
    assert fake.SlbActQuantizer is mindspore_slb.SlbActQuantizer
    assert quant.Conv2dSlbQuant is mindspore_slb.Conv2dSlbQuant


def test_every_setting_is_declared_once_with_its_setter_and_config_key():
    from mindspore_slb.config import CONFIG_KEYS, KEYS  # pylint: disable=import-outside-toplevel
    setters = {name[len("set_"):] for name in dir(SlbQuantAwareTraining) if name.startswith("set_")}
    setters.discard("epoch_temperature")  # an action on a network, not a setting
    assert setters == {key.name for key in KEYS}
    for key in KEYS:
        assert getattr(SlbQuantAwareTraining, f"set_{key.name}").__doc__ == key.doc
        assert f"{key.name}=" in repr(SlbQuantAwareTraining()), key.name
        assert (key.name in CONFIG_KEYS) == key.config_key
    assert CONFIG_KEYS[0] == "quant_dtype"
