# Shared by scripts/serve and scripts/test: make .venv and install the package into it when needed.
# Sourced, not run. Honours PYTHON (interpreter used to create .venv, default python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"

ensure_venv() {
  local extra="${1:-}"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
  fi
  # Reinstall only when pyproject.toml changed since the last install (pip is slow even when satisfied).
  local stamp="$VENV/.installed${extra:+-$extra}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "==> installing dicom-ecg-node${extra:+[$extra]} into .venv"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".${extra:+[$extra]}"
    touch "$stamp"
  fi
}

# apt-get install when running as root on a Debian-like machine; otherwise say what is missing.
apt_install() {
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    if [ -z "${_APT_UPDATED:-}" ]; then
      apt-get update -qq >/dev/null 2>&1 || true
      _APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "warning: cannot install $* (needs apt-get as root); tests that need it will skip" >&2
    return 1
  fi
}
