"""Golden Stick's import paths (``mindspore_gs.quantization...``), kept so that switching is a
change of the package name only."""

__all__ = []
