"""The recipe's export formats: mindspore_slb's registry (``mindspore_slb.register_export_format``).

The ``file_format`` option's choices and help come from ``EXPORT_FORMATS``, name -> ExportFormat
(ending, packed, write(net, inputs, path), description); a format registered before the recipe's
configuration is read is one more choice.
"""
# Only the package's top-level names: benchmarks/side_by_side.py runs the recipe on Golden Stick
# through a shim serving mindspore_slb's training names, and no submodule.
import mindspore_slb

try:
    EXPORT_FORMATS = mindspore_slb.export_formats()
    FormatError = mindspore_slb.ExportFormatError
except AttributeError:  # the Golden Stick shim: it trains and evaluates, and writes no file
    EXPORT_FORMATS = {}

    class FormatError(RuntimeError):
        """A format that cannot be written here."""

__all__ = ["EXPORT_FORMATS", "FormatError"]
