# Every target bootstraps .venv itself; dependencies are reinstalled only when the files that
# declare them change (a stamp is older than pyproject.toml or requirements.lock). `make run` installs
# the runtime only (the server, and the client distribution it depends on); `make test`, `make lint` and
# `make bench` add the development tools on top. `make test` also builds .venv-client, where the client
# (client/) is installed alone, without the server, for its own tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
CLIENT_VENV := .venv-client
CLIENT := $(CLIENT_VENV)/.installed

.PHONY: run test lint bench emulator lock clean size

# The `novita-gpu` script is the client's; a .venv from before the split held the server's, and upgrading the
# server there removes the file the client just wrote: KEEP_SCRIPT puts it back (once).
KEEP_SCRIPT = test -x $(BIN)/novita-gpu || $(BIN)/python -m pip install --quiet --disable-pip-version-check \
	--no-deps --force-reinstall -e ./client

# The service depends on the client distribution (client/), which is not on PyPI: both are named on one
# pip command line, so pip takes the client from here.
$(RUNTIME): pyproject.toml client/pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e './client[cli]' -e .
	@$(KEEP_SCRIPT)
	@touch $(RUNTIME)

$(DEV): $(RUNTIME)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e './client[cli]' -e '.[dev]'
	@$(KEEP_SCRIPT)
	@touch $(DEV)

# The client with its cli extra and pytest, nothing of the server: its tests show it stands alone.
$(CLIENT): client/pyproject.toml requirements.lock
	@test -x $(CLIENT_VENV)/bin/python || $(PYTHON) -m venv $(CLIENT_VENV)
	$(CLIENT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e './client[cli]' pytest
	@touch $(CLIENT)

# Where it listens comes from HOST and PORT (default 127.0.0.1:3000), in the environment or .env.
run: $(RUNTIME)
	$(BIN)/novita-gpu serve

emulator: $(RUNTIME)
	$(BIN)/novita-gpu emulator --port 4000

# The client's tests (client/tests) in .venv-client first, then the main suite.
test: $(DEV) $(CLIENT)
	cd client && ../$(CLIENT_VENV)/bin/python -m pytest -q
	$(BIN)/python -m pytest -n 2 -q $(PYTEST_ARGS)

# mypy's files (pyproject.toml) include client/src.
lint: $(DEV)
	$(BIN)/ruff check src client tests bench examples
	$(BIN)/ruff format --check src client tests bench examples
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

bench: $(DEV)
	$(BIN)/python -m bench

# Regenerate the constraints file after changing dependencies in pyproject.toml.
lock: 
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e './client[cli]' -e '.[dev]'
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^novita-gpu' > requirements.lock

# What `make run` installs: the runtime environment's size on disk.
size: $(RUNTIME)
	@du -sh $(VENV)

clean:
	rm -rf $(VENV) $(CLIENT_VENV) .pytest_cache .mypy_cache .ruff_cache
