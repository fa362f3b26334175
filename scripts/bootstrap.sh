#!/usr/bin/env bash
# Set up ./.venv idempotently: build llama-cpp-python once into a wheel cache outside the repo,
# then install the exact versions of requirements.txt. Re-running with nothing changed takes ~1 s.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
CACHE="${PTLLM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/pt-llm-compare}"
LLAMA_VERSION="0.3.36"
PORTABLE_FLAGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU && [ "${PTLLM_CPU_ONLY:-0}" != "1" ]; then
  VARIANT="cuda"; CMAKE_FLAGS="$PORTABLE_FLAGS -DGGML_CUDA=on"
else
  VARIANT="cpu"; CMAKE_FLAGS="$PORTABLE_FLAGS"
fi
WHEELS="$CACHE/wheels/$VARIANT"
STAMP="$VENV/.installed-$(cat requirements.txt scripts/bootstrap.sh | sha256sum | cut -c1-16)-$VARIANT"

if [ -f "$STAMP" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> criando o ambiente virtual em $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip>=24" wheel setuptools

mkdir -p "$WHEELS" "$CACHE/logs"
if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  LOG="$CACHE/logs/llama-cpp-python-build-$VARIANT.log"
  echo "==> compilando llama-cpp-python $LLAMA_VERSION ($VARIANT) uma única vez para $WHEELS"
  echo "    (≈4–7 min em 2 núcleos; log em $LOG)"
  start=$(date +%s)
  if ! CMAKE_ARGS="$CMAKE_FLAGS" "${PIP[@]}" wheel --no-deps --no-cache-dir -w "$WHEELS" \
        "llama-cpp-python==$LLAMA_VERSION" >"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    echo "erro: a compilação do llama-cpp-python falhou (log completo em $LOG)" >&2
    exit 1
  fi
  echo "    pronto em $(( $(date +%s) - start )) s"
fi

echo "==> instalando dependências fixadas (requirements.txt)"
"${PIP[@]}" install --progress-bar on --find-links "$WHEELS" -r requirements.txt 2> >(grep -v "^WARNING: Location" >&2)
rm -f "$VENV"/.installed-*
touch "$STAMP"
echo "==> ambiente pronto ($VENV, llama.cpp: $VARIANT)"
