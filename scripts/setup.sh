#!/usr/bin/env bash
# Set up .venv with bodycam-sync and its test tools. Idempotent; works on a fresh Debian 12.
# Debian packages are installed when running as root (CI, a dock); otherwise they must be present.
set -euo pipefail
cd "$(dirname "$0")/.."
want_apt=("$@")
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=(python3-venv python3-pip "${want_apt[@]}")
  missing=()
  for pkg in "${need[@]}"; do
    # Node.js from another source (NodeSource's nodejs provides and conflicts with Debian's npm) is
    # kept: asking apt for npm there would replace it with Debian's older Node.
    case "$pkg" in
      nodejs) command -v node >/dev/null && continue ;;
      npm) command -v npm >/dev/null && continue ;;
    esac
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Wait for another apt (unattended-upgrades on a machine just booted, another setup) instead of
    # failing at once with "Could not get lock".
    lock=(-o DPkg::Lock::Timeout=600)
    apt-get "${lock[@]}" update -qq
    apt-get "${lock[@]}" install -y -qq "${missing[@]}" >/dev/null
  fi
fi
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q -e '.[test]'
# Man pages: a wheel installs docs/man/*.1 under share/man/man1 (setup.cfg data_files); an editable
# install does not, so put them where man(1) looks for a PATH entry's pages (../share/man).
mkdir -p .venv/share/man/man1
cp docs/man/*.1 .venv/share/man/man1/
