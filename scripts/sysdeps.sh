#!/usr/bin/env bash
# Make sure the system tools a target needs are installed.
# Usage: scripts/sysdeps.sh venv|run|test|bench
# As root: installs what is missing with apt-get. Otherwise: prints the exact apt command and,
# for `test`, goes on (tests whose tool is missing skip with that command as their reason,
# except under CI=true, where they fail).
set -euo pipefail

want=${1:-test}
# command-on-PATH  Debian-package
test_tools=(
  "promtool prometheus"
  "setpriv util-linux"
  "systemd-analyze systemd"
  "snmpd snmpd"
  "snmpget snmp"
  "chromium chromium"
  "tshark tshark"
  "softflowd softflowd"
  "nfdump nfdump"
  "tcpreplay tcpreplay"
  "ip iproute2"
  "arp-scan arp-scan"
  "rsyslogd rsyslog"
)
run_tools=()
# `make bench`: the test tools plus the HTTP load generator of benchmarks/bench_loop.py
bench_tools=(
  "hey hey"
)
# shared-library-soname  Debian-package (found with ldconfig -p); the flow collector's capture
# filters are compiled by libpcap
libs=("libpcap.so.0.8 libpcap0.8")
# data-file  Debian-package (no command to look for); the discovery collector's MAC vendors
files=("/usr/share/ieee-data/oui.csv ieee-data")
# the same for the tests only (a glob: the library folder is per architecture); the syslog sink's
# tests run rsyslogd with a TLS listener, which needs rsyslog's GnuTLS driver
test_files=("/usr/lib/*/rsyslog/lmnsd_gtls.so rsyslog-gnutls"
  # libseccomp's binding for Debian's python3: the systemd sandbox test applies the unit's
  # SystemCallFilter= and RestrictAddressFamilies= with it (tests/packaging/seccomp_exec.py)
  "/usr/lib/python3/dist-packages/seccomp.cpython-*.so python3-seccomp")

declare -a tools
case "$want" in
  test) tools=("${test_tools[@]}"); files+=("${test_files[@]}") ;;
  run) tools=("${run_tools[@]}") ;;
  bench) tools=("${test_tools[@]}" "${bench_tools[@]}"); files+=("${test_files[@]}") ;;
  venv) tools=(); libs=(); files=() ;;
  *) echo "usage: $0 venv|run|test|bench" >&2; exit 2 ;;
esac

missing=()
# `python3 -m venv` needs ensurepip, which Debian ships separately
"${PYTHON:-python3}" -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=("python3-venv")
for entry in "${tools[@]+"${tools[@]}"}"; do
  read -r cmd pkg <<<"$entry"
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
for entry in "${libs[@]+"${libs[@]}"}"; do
  read -r soname pkg <<<"$entry"
  /sbin/ldconfig -p 2>/dev/null | grep -q "^[[:space:]]*$soname " || missing+=("$pkg")
done
for entry in "${files[@]+"${files[@]}"}"; do
  read -r file pkg <<<"$entry"
  compgen -G "$file" >/dev/null || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark's package asks whether non-root users may capture packets: answer "no" beforehand
  if command -v debconf-set-selections >/dev/null 2>&1; then
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "missing system packages: ${missing[*]}"
  echo "install them with: sudo apt-get install -y ${missing[*]}"
  # tests can skip what is missing; nothing else can go on without it
  if [ "${CI:-}" = "true" ] || [ "$want" != test ] || [[ " ${missing[*]} " == *" python3-venv "* ]]; then exit 1; fi
fi
