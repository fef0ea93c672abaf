# Two commands: `make demo` runs the whole platform, `make test` runs every test.
# Both create ./.venv and install the project into it first.

PYTHON ?= python3
# Installed with --no-deps: its metadata requires `dlib`, which pip would build from source; the
# `faces` extra brings the prebuilt dlib-bin and the models instead.
FACE_RECOGNITION := face_recognition==1.3.0
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint install check-prereqs clean dashboards

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	$(BIN)/python -m pip install --quiet --no-deps '$(FACE_RECOGNITION)'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/community demo

check-prereqs:
	@$(PYTHON) scripts/check_prereqs.py

test: check-prereqs $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/ingest_throughput.py
	$(BIN)/python bench/alarm_to_ticket.py
	$(BIN)/python bench/ticket_api.py
	$(BIN)/python bench/edge_polling.py
	$(BIN)/python bench/edge_outbox.py
	$(BIN)/python bench/face_match.py
	$(BIN)/python bench/face_pipeline.py
	$(BIN)/python bench/door_decision.py
	$(BIN)/python bench/live_feed.py
	$(BIN)/python bench/analytics.py

# Rewrite dashboards/community/*.json from the SQL texts of cloud/storage/queries.py.
dashboards: $(STAMP)
	$(BIN)/python -m dashboards.build

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
