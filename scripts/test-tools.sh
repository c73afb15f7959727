#!/usr/bin/env bash
# Debian packages the tests and the Makefile need, installed only when missing.
#   scripts/test-tools.sh                 promtool, prometheus, prometheus-pushgateway, prometheus-alertmanager
#                                         (run by `make test`)
#   scripts/test-tools.sh venv [PYTHON]   python3-venv, before the Makefile creates .venv
#   scripts/test-tools.sh image           buildah, podman, runc, debootstrap (make image / make image-test)
# As root: apt-get installs the missing packages without starting their services (the tests start their
# own servers on free loopback ports). Otherwise: prints the command to run and exits 1.
set -euo pipefail

mode=${1:-tools}
python=${2:-python3}
case "$mode" in
  tools | venv | image) ;;
  *) echo "usage: $0 [tools | venv [PYTHON] | image]" >&2; exit 2 ;;
esac

# The Debian packages of this mode that are missing, one a line.
missing() {
  if [ "$mode" = tools ]; then
    # promtool ships in Debian's prometheus package.
    { command -v promtool && command -v prometheus; } >/dev/null 2>&1 || echo prometheus
    command -v prometheus-pushgateway >/dev/null 2>&1 || echo prometheus-pushgateway
    command -v prometheus-alertmanager >/dev/null 2>&1 || echo prometheus-alertmanager
  elif [ "$mode" = image ]; then
    for tool in buildah podman runc debootstrap; do
      command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$tool" >/dev/null 2>&1 || echo "$tool"
    done
  else
    # Debian's python3 has the venv module even without python3-venv, but not ensurepip, which venv needs.
    { "$python" -m venv --help && "$python" -c "import ensurepip"; } >/dev/null 2>&1 || echo python3-venv
  fi
}
mapfile -t need < <(missing)
[ ${#need[@]} -gt 0 ] || exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "test-tools: missing Debian package(s) ${need[*]}; install them with:" >&2
  echo "  sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "test-tools: missing ${need[*]} and no apt-get here; install them with your package manager" >&2
  exit 1
fi

# PIDs of the packages' services: Debian runs both servers as the user prometheus (a test's own servers
# run as the user running the tests), to tell afterwards whether the install started one.
servers() {
  command -v ps >/dev/null 2>&1 || return 0
  ps -eo pid=,user:32=,args= | awk '$2 == "prometheus" { name = $3; sub(".*/", "", name) }
    $2 == "prometheus" && (name == "prometheus" || name == "prometheus-pushgateway" ||
      name == "prometheus-alertmanager") { print $1 }' | sort
}
before=$(servers)

# Debian's postinst scripts start the services through invoke-rc.d / deb-systemd-invoke unless
# policy-rc.d says no (101). Write one for the install if there is none; remove only that one.
policy=/usr/sbin/policy-rc.d
if (set -C && printf '#!/bin/sh\n# Written by scripts/test-tools.sh for one apt-get install: start no services.\nexit 101\n' \
  >"$policy") 2>/dev/null; then
  trap 'rm -f "$policy"' EXIT
  trap 'exit 130' INT TERM HUP
  chmod 755 "$policy"
else
  rc=0
  "$policy" prometheus start >/dev/null 2>&1 || rc=$?
  [ "$rc" -eq 101 ] || echo "test-tools: note: the existing $policy lets services start (exit $rc); left as it is" >&2
fi

echo "test-tools: installing ${need[*]} (apt-get)" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

started=$(comm -13 <(echo "$before") <(servers) | tr '\n' ' ')
if [ -n "${started// /}" ]; then
  echo "test-tools: the install left server process(es) running, PID(s) ${started% }; the tests start their" \
    "own servers: stop these (kill PID, or systemctl stop prometheus prometheus-pushgateway prometheus-alertmanager)" >&2
  exit 1
fi
mapfile -t still < <(missing)
if [ ${#still[@]} -gt 0 ]; then
  echo "test-tools: still missing after the install: ${still[*]}" >&2
  exit 1
fi
