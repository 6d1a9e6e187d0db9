# make demo: install, then train W1 SLB ResNet18 on the bundled digits data and evaluate it
#            (quantized and converted network); about 2.5 minutes on 2 CPU cores, install included.
# make test: install the test requirements and run the test suite.
# Both install through constraints.txt: the exact versions the suite was last run against.
PYTHON ?= python3
DEMO_CONFIG ?= configs/resnet18_digits_config.yaml
PIP_INSTALL = $(PYTHON) -m pip install -c constraints.txt

.PHONY: demo test

demo:
	$(PIP_INSTALL) -e . scikit-learn
	$(PYTHON) scripts/train.py --config_path $(DEMO_CONFIG)
	$(PYTHON) scripts/eval.py --config_path $(DEMO_CONFIG)

# mindcv (third-party model code for the "any network" test) is installed without its
# dependencies: the models the test builds need none of them, and it is never a runtime dependency.
test:
	$(PIP_INSTALL) -e ".[test]"
	$(PYTHON) -m pip install --no-deps mindcv==0.3.0
	$(PYTHON) -m pytest -q tests
