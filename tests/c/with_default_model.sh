#!/bin/sh
# Runs PROGRAM [ARGS...] with the default model's path as its last argument, or "" when
# scripts/default_model.py finds none (the program then exits 77: skipped).
# usage: with_default_model.sh SOURCE_DIR PROGRAM [ARGS...]
src=$1
shift
model=$("${PYTHON:-python3}" "$src/scripts/default_model.py" 2>/dev/null) || model=""
exec "$@" "$model"
