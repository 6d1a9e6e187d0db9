"""The ResNet18 SLB recipe behind scripts/. Not part of the installed mindspore_slb package.

The runs: train, evaluate, export (file formats: export_formats), sweep.
What they share: config (options, YAML, command line), quant_type (what a quant_type asks for),
runtime (entry point, device, seeds, data-parallel group), dataset (data sets and pipelines),
resnet and network (the model, with SLB applied), checkpoints (names, records, loading),
output_folder (a run's claim on its folder), lr_schedule, metrics, callbacks (epoch report,
checkpoint saving), search_state (how far the search of each layer is), plots, files (atomic
writes), errors. synthetic_data writes small data sets for the tests and benchmarks.

Training and evaluation find mindspore_slb's layers and quantizers by its top-level names, which
benchmarks/golden_stick_shim serves from Golden Stick, so that the same recipe trains either
implementation (tests/test_side_by_side.py). Submodules are imported only for this package's own
networks (BatchNorm re-estimation while searching) and by export, which a comparison does not run.
"""
