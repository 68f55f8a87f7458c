# Sourced by the set-up scripts: the Python that lmprint is installed into. Inside a virtual environment, its own;
# where the system's Python refuses packages from pip (PEP 668: Debian's and Ubuntu's), a virtual environment made
# in .venv here, activated for the rest of the script; else python3 as it is.
if [ -z "${VIRTUAL_ENV:-}" ] && python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
  if [ ! -x .venv/bin/python3 ]; then
    if ! python3 -m venv .venv 2>/dev/null; then  # Debian keeps venv's pip in its own package
      rm -rf .venv
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv .venv
    fi
  fi
  # shellcheck disable=SC1091
  . .venv/bin/activate
  echo "lmprint: this Python takes no packages from pip, so everything goes into $PWD/.venv;" \
       "to use the commands afterwards: . $PWD/.venv/bin/activate" >&2
fi
