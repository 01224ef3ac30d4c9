#!/usr/bin/env bash
# BentoML docker `setup_script` (bentofile.yaml): runs inside `bentoml containerize` after
# the Bento's files are copied (BentoML 1.4's base.j2), with the docker env of the
# bentofile set (NUMBA_CACHE_DIR in the image, NUMBA_CPU_NAME=generic). It compiles every
# numba kernel the service runs (sproxxo.kernels.compile_all) into that cache, so a fresh
# Cloud Run instance loads machine code for any x86-64 CPU instead of compiling ~6 s of it.
set -euo pipefail
: "${NUMBA_CACHE_DIR:?set in the docker env of bentofile.yaml}"
mkdir -p "$NUMBA_CACHE_DIR"
cd "$BENTO_PATH/src"
python -c "from sproxxo.kernels import compile_all; compile_all()"
# the service runs as the Bento's user, which owns BENTO_PATH
chown -R "$(stat -c %u:%g "$BENTO_PATH")" "$NUMBA_CACHE_DIR"
