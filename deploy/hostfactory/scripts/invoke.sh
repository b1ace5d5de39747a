#!/bin/sh
# Shared by the five Host Factory provider scripts: finds the ohf binary and runs one
# operation. The binary is found through $OHF_BIN, then PATH, then bin/ beside this folder.
# With OHF_SERVER set (and OHF_TOKEN, OHF_CA_CERT as needed), the operation runs on that ohf
# daemon instead of the local store, with the same output.
set -u
op="$1"
shift
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${OHF_BIN:-}" ]; then
    bin="$OHF_BIN"
elif command -v ohf >/dev/null 2>&1; then
    bin=$(command -v ohf)
elif [ -x "$here/bin/ohf" ]; then
    bin="$here/bin/ohf"
elif [ -x "$here/../bin/ohf" ]; then
    bin="$here/../bin/ohf"
else
    printf '{"message": "ohf binary not found: set OHF_BIN, put ohf on PATH, or place it in %s/bin"}\n' "$here"
    exit 1
fi
if [ ! -x "$bin" ]; then
    printf '{"message": "ohf binary %s is not executable"}\n' "$bin"
    exit 1
fi
exec "$bin" hf "$op" "$@"
