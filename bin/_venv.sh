# Shared by bin/up and bin/test: make .venv with Python >= 3.11 and install a requirements file
# (only when it, or a file it includes, changed since its last install).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 14) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "Loupe needs Python 3.11 to 3.13 (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

# The text a requirements file installs: its own lines and, in order, those of every file it
# pulls in with -r/-c (paths relative to the file that names them).
requirements_text() {
  local file="$1" line name
  cat "$file"
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%%#*}"
    case "$line" in
      -r\ *|-c\ *) name="${line#-? }" ;;
      --requirement\ *|--requirement=*|--constraint\ *|--constraint=*) name="${line#--*[ =]}" ;;
      *) continue ;;
    esac
    name="$(echo "$name" | xargs)"
    case "$name" in /*) ;; *) name="$(dirname "$file")/$name" ;; esac
    requirements_text "$name"
  done < "$file"
}

# One stamp per requirements file (.venv/.installed-<name>) holding the digest of what it
# installs, so bin/up (requirements.txt) and bin/test (requirements-dev.txt) each reinstall when,
# and only when, their own file or one it includes changed.
requirements_digest() {
  requirements_text "$1" | sha256sum | cut -d' ' -f1
}

ensure_venv() {
  local requirements="$1"
  if [ ! -x .venv/bin/python ]; then
    "$(find_python)" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
  fi
  local stamp=".venv/.installed-$(basename "$requirements")"
  local digest
  digest="$(requirements_digest "$requirements")"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    echo "Installing $requirements into .venv ..."
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$digest" > "$stamp"
  fi
}
