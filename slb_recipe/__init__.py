"""The ResNet18 SLB recipe behind scripts/: configuration, data, model, schedules, callbacks and
the train / evaluate / export / sweep runs. Not part of the installed mindspore_slb package."""
