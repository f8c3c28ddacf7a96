# medspark: `make demo` runs the pipeline on the bundled sample data; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RADIOMICS := $(VENV)/.radiomics
DEMO   := build/demo

.PHONY: demo test lint check-java clean dist bench-ingest bench-features bench-preprocess bench-train \
	bench-nightly

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "medspark needs Python >= 3.11 (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,deep]'
	touch $(STAMP)

# pyradiomics 3.0.1 (the reference the feature tests compare against) only builds without
# build isolation, against the numpy already installed.
$(RADIOMICS): $(STAMP)
	$(BIN)/python -m pip install -q setuptools wheel
	$(BIN)/python -m pip install -q --no-build-isolation pyradiomics==3.0.1
	touch $(RADIOMICS)

check-java: $(STAMP)
	@$(BIN)/python -c 'from medspark.session import check_java; check_java()' 2>/dev/null || \
		{ echo "ERROR: Spark 4 needs Java 17 or newer on PATH (or JAVA_HOME)."; \
		  echo "       Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless"; exit 1; }

# The sample arrives over two nights (the second brings new patients); each night is one
# `medspark nightly` run; after night 1 a small CNN trains on its planes for 15 epochs
# (`medspark deep train`; global max pooling: a plane is positive when a small nodule is
# anywhere in it), then a radiomics model (`medspark train`, the latest, so it is the one that
# scores night 2); the morning reports land in $(DEMO)/lake/reports/.
demo: $(STAMP) check-java
	rm -rf $(DEMO)
	$(BIN)/medspark sample --output $(DEMO)/sample --patients 24 --nights 2
	mkdir -p $(DEMO)/export
	cp -r $(DEMO)/sample/nights/1/. $(DEMO)/export/
	$(BIN)/medspark nightly --input $(DEMO)/export --lake $(DEMO)/lake \
		--labels $(DEMO)/sample/labels.csv --date 2026-11-01 --set privacy.allow_demo_key=true
	$(BIN)/medspark deep train --lake $(DEMO)/lake --arch cnn --set deep.epochs=15 \
		--set deep.cnn.pool=max --set deep.optimizer.lr=0.003 --set deep.validation_folds=3
	$(BIN)/medspark train --lake $(DEMO)/lake
	cp -r $(DEMO)/sample/nights/2/. $(DEMO)/export/
	$(BIN)/medspark nightly --input $(DEMO)/export --lake $(DEMO)/lake \
		--labels $(DEMO)/sample/labels.csv --date 2026-11-02 --set privacy.allow_demo_key=true
	@echo "morning report: $(DEMO)/lake/reports/2026-11-02/index.html"
	@echo "all nights:     $(DEMO)/lake/reports/index.html"

# A wheel and the --py-files archive a cluster's spark-submit uses (docs/cluster.md).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --wheel --outdir dist . >/dev/null
	$(BIN)/python -m medspark.packaging dist
	@ls -l dist

test: $(STAMP) $(RADIOMICS) check-java
	$(BIN)/ruff check medspark jobs tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check medspark jobs tests benchmarks

bench-ingest: $(STAMP) check-java
	$(BIN)/python benchmarks/ingest.py

bench-preprocess: $(STAMP) check-java
	$(BIN)/python benchmarks/preprocess.py

bench-train: $(STAMP) check-java
	$(BIN)/python benchmarks/train.py

bench-nightly: $(STAMP) check-java
	$(BIN)/python benchmarks/nightly.py

bench-features: $(STAMP) $(RADIOMICS)
	$(BIN)/python benchmarks/features.py

clean:
	rm -rf build dist .pytest_cache
