# Sourced by scripts/setup.sh, test.sh and main-job.sh (from the repository root): picks the
# Python that ktx's Python packages are installed into and its tests run with.
#
# That is the python3 on PATH when pip may install into it: a virtual environment, pyenv, conda,
# or a system Python that is not "externally managed". Debian 12's own /usr/bin/python3 is
# (PEP 668: pip refuses to install into it), so then a virtual environment in .venv is made from
# it, seeing the Debian packages too (--system-site-packages), and put first on PATH. Every later
# run of these scripts finds .venv and uses it again.
ktx_use_python() {
  local venv="$PWD/.venv"
  if [ ! -x "$venv/bin/python3" ]; then
    if python3 - <<'PY' 2>/dev/null; then return 0; fi
import os, sys, sysconfig
in_venv = sys.prefix != sys.base_prefix
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
try:
    import pip  # noqa: F401  (Debian's python3 has no pip without python3-pip)
except ImportError:
    sys.exit(1)
sys.exit(0 if in_venv or not managed else 1)
PY
    echo "== $(command -v python3) is externally managed (PEP 668) or has no pip:" \
      "a virtual environment in .venv"
    python3 -m venv --system-site-packages "$venv"
  fi
  export VIRTUAL_ENV="$venv"
  export PATH="$venv/bin:$PATH"
}
ktx_use_python
