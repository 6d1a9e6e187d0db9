"""Which Cell types SLB quantizes, and how: one handler per float Cell type.

Rewrite (``apply``), BatchNorm calibration, ``convert`` and export find quantizable and quantized
layers here and nowhere else. Built in: ``nn.Conv2d`` (quantized by default) and ``nn.Dense``
(registered, off by default as in Golden Stick; ``enable_dense_quant`` turns it on).

A user's own layer type needs a ``SlbQuantLayer`` subclass that computes its output from an input
and a weight, and a function building the plain deployable layer from that quantized layer and
its final weight::

    register_layer(MyConv, MyConvSlbQuant, lambda layer, weight: MyConv(..., weight=weight))
"""
import inspect
from dataclasses import dataclass, field

from mindspore import nn

from mindspore_slb.layers import (SLB, WEIGHT_SEARCHES, Conv2dSlbQuant, DenseSlbQuant, SlbQuantLayer,
                                  deployable_conv2d, deployable_dense)

__all__ = ["LayerHandler", "register_layer", "unregister_layer", "registered_layers", "handler_for",
           "handler_of_quantized", "is_quantized"]


@dataclass(frozen=True)
class LayerHandler:
    """How one float Cell type is quantized.

    Attributes:
        float_type (type): the Cell type quantized (its subclasses too, unless they override
            ``construct``: they compute something else).
        quantized_type (type): a ``SlbQuantLayer`` subclass built (``build``) as
            ``quantized_type(cell, num_bits, act_quantizer, weight_scale, weight_search=name)``,
            which passes them on to ``SlbQuantLayer.__init__``; its weight quantizer, chosen by
            ``weight_search``, owns the search (see ``quantizer.CandidateQuantizer``). For SLB,
            the default search, ``weight_search`` is not passed, so that a type written without
            that keyword is quantized by SLB only.
        deploy (callable): ``deploy(quantized_layer, weight)`` returns the plain Cell computing
            what the quantized layer computes in evaluation, given its final weight (a Tensor)
            and without its input quantizer (``convert`` adds that in front).
        enabled_by_default (bool): whether ``apply`` quantizes this type unless told otherwise.
        weight_searches (tuple): the ``weight_search`` names ``quantized_type`` can be built with:
            all of ``WEIGHT_SEARCHES`` when its constructor takes ``weight_search``, else "slb".
            Read once from its signature.
    """
    float_type: type
    quantized_type: type
    deploy: object
    enabled_by_default: bool = True
    weight_searches: tuple = field(init=False)

    def __post_init__(self):
        parameters = inspect.signature(self.quantized_type).parameters
        takes_search = "weight_search" in parameters or any(
            parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
        object.__setattr__(self, "weight_searches", tuple(WEIGHT_SEARCHES) if takes_search else (SLB,))

    def check_search(self, weight_search):
        """Refuse a ``weight_search`` that ``quantized_type`` cannot be built with."""
        if weight_search not in self.weight_searches:
            raise TypeError(f"'weight_search' is {weight_search!r}, but {self.quantized_type.__name__}, which "
                            f"quantizes {self.float_type.__name__}, takes no 'weight_search' argument: accept "
                            f"it and pass it on to SlbQuantLayer.__init__, or keep weight_search 'slb'.")

    def build(self, cell, num_bits, act_quantizer, weight_scale, weight_search):
        """The quantized layer replacing ``cell``: every quantized type is built here, the same way."""
        self.check_search(weight_search)
        search = {} if weight_search == SLB else {"weight_search": weight_search}
        return self.quantized_type(cell, num_bits, act_quantizer, weight_scale, **search)


_HANDLERS = {}  # float type -> LayerHandler, in registration order


def register_layer(float_type, quantized_type, deploy, enabled_by_default=True):
    """Register (or replace) the handler of ``float_type``; see ``LayerHandler``."""
    if not (isinstance(float_type, type) and issubclass(float_type, nn.Cell)):
        raise TypeError(f"'float_type' must be a subclass of mindspore.nn.Cell, but got {float_type!r}.")
    if not (isinstance(quantized_type, type) and issubclass(quantized_type, SlbQuantLayer)):
        raise TypeError(f"'quantized_type' must be a subclass of mindspore_slb.SlbQuantLayer, "
                        f"but got {quantized_type!r}.")
    if not callable(deploy):
        raise TypeError(f"'deploy' must be callable as deploy(quantized_layer, weight), but got {deploy!r}.")
    if not isinstance(enabled_by_default, bool):
        raise TypeError(f"'enabled_by_default' must be a bool, but got {enabled_by_default!r}.")
    _HANDLERS[float_type] = LayerHandler(float_type, quantized_type, deploy, enabled_by_default)


def unregister_layer(float_type):
    """Forget the handler of ``float_type``; an unregistered type is an error."""
    if float_type not in _HANDLERS:
        raise KeyError(f"'float_type' {float_type!r} is not registered; registered: "
                       f"{', '.join(t.__name__ for t in _HANDLERS)}.")
    del _HANDLERS[float_type]


def registered_layers():
    """The handlers, in registration order."""
    return list(_HANDLERS.values())


def handler_for(cell):
    """The handler quantizing ``cell``: its nearest registered base type, provided ``cell`` does not
    override that type's ``construct``. None when there is none."""
    for base in type(cell).__mro__:
        handler = _HANDLERS.get(base)
        if handler is not None:
            return handler if type(cell).construct is base.construct else None
    return None


def handler_of_quantized(layer):
    """The handler whose ``quantized_type`` is ``layer``'s type."""
    for handler in _HANDLERS.values():
        if type(layer) is handler.quantized_type:
            return handler
    raise ValueError(f"No registered handler quantizes into {type(layer).__name__}; it cannot be converted.")


def is_quantized(cell):
    """Whether ``cell`` is a quantized layer."""
    return isinstance(cell, SlbQuantLayer)


register_layer(nn.Conv2d, Conv2dSlbQuant, deployable_conv2d)
register_layer(nn.Dense, DenseSlbQuant, deployable_dense, enabled_by_default=False)
