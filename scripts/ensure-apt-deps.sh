#!/usr/bin/env bash
# Make sure the Debian packages InfraScope's tests need are installed:
# Prometheus (promtool), Alertmanager (amtool), node_exporter (reference for the
# agent's series), VictoriaMetrics (the "outgrown one box" backend), systemd
# (systemd-analyze verifies the units; installing it starts nothing), plus
# python3-venv when this python3 cannot create virtualenvs.
#
# Nothing missing: exits 0 silently. Missing and root: installs them.
# Missing and not root: names them, prints the command, exits 1.
set -euo pipefail

packages=(prometheus prometheus-alertmanager prometheus-node-exporter victoria-metrics shellcheck wget systemd)

if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    packages+=(python3-venv)
fi

# `dpkg -s` exits 0 for any package dpkg knows about, including removed ones
# with config files left, so look at the status itself. Read it into a variable
# rather than piping into `grep -q`: grep exits at the first match, dpkg can then
# die of SIGPIPE, and under `pipefail` an installed package would count as missing.
is_installed() {
    local status
    status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" || return 1
    [ "$status" = "install ok installed" ] || [ "$status" = "hold ok installed" ]
}

missing_packages() {
    local p
    for p in "${packages[@]}"; do
        is_installed "$p" || printf '%s\n' "$p"
    done
}

mapfile -t missing < <(missing_packages)
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    {
        echo "ensure-apt-deps: missing Debian packages: ${missing[*]}"
        echo "ensure-apt-deps: install them with:"
        echo "    sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
    } >&2
    exit 1
fi

echo "ensure-apt-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
# Package scripts may try to start the services; without an init system that can
# fail or warn. Such failures are not ours to judge by apt's exit status: what
# counts is whether the packages ended up installed, checked below.
if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
    echo "ensure-apt-deps: apt-get install reported an error; finishing configuration" >&2
    dpkg --configure -a || true
fi

mapfile -t still_missing < <(missing_packages)
if [ "${#still_missing[@]}" -ne 0 ]; then
    echo "ensure-apt-deps: still not installed after apt-get: ${still_missing[*]}" >&2
    exit 1
fi
