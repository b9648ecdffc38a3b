# Sourced by the other scripts: makes .venv (Python 3.11) and installs riskwatch
# with its dev extra into it, again only when pyproject.toml has changed.
# Heavy downloads are cached outside the repository (pip's cache, ~/.m2,
# ~/.cache/riskwatch).
set -euo pipefail

RISKWATCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$RISKWATCH_ROOT/.venv"

find_python() {
  for candidate in "${RISKWATCH_PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

if [ ! -x "$venv/bin/python" ]; then
  if ! python=$(find_python); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "bootstrap: installing Python 3.11 from Debian's packages"
      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv
    fi
    python=$(find_python) || { echo "bootstrap: Python 3.11 is required" >&2; exit 1; }
  fi
  echo "bootstrap: creating $venv with $python"
  "$python" -m venv "$venv"
fi

stamp="$venv/.riskwatch-installed"
want=$(sha256sum "$RISKWATCH_ROOT/pyproject.toml" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing riskwatch and its dependencies into $venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e "$RISKWATCH_ROOT[dev]"
  echo "$want" >"$stamp"
fi

export PATH="$venv/bin:$PATH"
cd "$RISKWATCH_ROOT"
