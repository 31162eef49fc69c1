#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing, then runs cargo test.
#   - Debian libtiff-tools (tiffinfo, tiffcp: the independent TIFF decoder the tests compare with)
#   - Python 3 with Pillow (python3 -m pip; the machine's python3 may not be Debian's)
#   - swaks (Debian), a real SMTP client for the TLS tests
#   - openssl (Debian), whose `openssl passwd` makes the SHA-crypt hashes of the AUTH tests
#   - a loopback-only Postfix for the end-to-end receipt test (../shared/bench/postfix_loopback.sh)
# Under CI=true a tool that cannot be installed fails the run; tests never skip there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v tiffinfo >/dev/null 2>&1 && command -v tiffcp >/dev/null 2>&1 || need_apt+=(libtiff-tools)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
command -v swaks >/dev/null 2>&1 || need_apt+=(swaks)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! python3 -c 'import PIL' >/dev/null 2>&1; then
  echo "test.sh: installing Pillow"
  python3 -m pip install -q Pillow
fi

if [ "${CI:-}" = true ] && [ ! -d ../shared/corpus ]; then
  echo "test.sh: CI=true but ../shared (the test corpus) is missing" >&2
  exit 1
fi

# A loopback-only Postfix (smtpd on 127.0.0.1:25, DSNs for gw.example.test to 127.0.0.1:2525)
# for the end-to-end receipt test. Started when ../shared has its setup script and we are root.
postfix_up() { (exec 3<>/dev/tcp/127.0.0.1/25) 2>/dev/null; }
if ! postfix_up && [ -f ../shared/bench/postfix_loopback.sh ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "test.sh: starting a loopback Postfix (../shared/bench/postfix_loopback.sh start)"
    bash ../shared/bench/postfix_loopback.sh start >/tmp/t37gw-postfix-start.log 2>&1 \
      || { cat /tmp/t37gw-postfix-start.log >&2; [ "${CI:-}" != true ] || exit 1; }
  elif [ "${CI:-}" = true ]; then
    echo "test.sh: CI=true needs root to start the loopback Postfix" >&2
    exit 1
  fi
fi

cargo test "$@"
