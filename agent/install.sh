#!/usr/bin/env bash
# Install the InfraScope agent as a systemd service (Debian / Ubuntu).
#
#   sudo agent/install.sh [--docker] [--core CORE] [PACKAGE]   install or update
#   sudo agent/install.sh --uninstall [--purge]                remove it again
#
# PACKAGE is the agent's source folder (default: the folder of this script), a
# wheel or an sdist; CORE is the same for infrascope-core, the library the agent
# depends on (default: core/ beside this script's folder in the repository).
# Installing:
#   - system user and group infrascope-agent (no login shell, no home);
#     --docker also adds it to the docker group (read access to the Docker
#     socket for service discovery); without --docker it is taken out again
#   - a virtualenv at /opt/infrascope-agent with the agent and infrascope-core in it
#   - /etc/systemd/system/infrascope-agent.service
#   - /etc/infrascope-agent/web-config.yml (0640 root:infrascope-agent) and
#     /etc/default/infrascope-agent, each only if not there yet
#   - systemctl daemon-reload, enable --now (restart when something changed),
#     only when systemd is running
# Running it again changes nothing that is already right. --uninstall removes
# the service, the virtualenv and the user; the two files in /etc stay if they
# were edited (--purge removes them anyway).
#
# For tests and packaging (never needed on a real host):
#   INSTALL_ROOT=DIR      install below DIR instead of / (implies SKIP_SYSTEMCTL,
#                         no root needed)
#   SKIP_USER=1           do not create, change or remove users and groups
#   SKIP_SYSTEMCTL=1      never call systemctl
#   INSTALL_PYTHON=PATH   Python used to make the virtualenv (default /usr/bin/python3)
#   INSTALL_VENV_ARGS=..  extra `python -m venv` arguments (--system-site-packages)
#   INSTALL_PIP_ARGS=...  extra `pip install` arguments (--no-deps --no-index ...)
#   INSTALL_SITE_PACKAGES=DIR  also import from DIR (a .pth file in the
#                         virtualenv): dependencies for a --no-deps install
set -euo pipefail

NAME=infrascope-agent
ROOT="${INSTALL_ROOT:-}"
ROOT="${ROOT%/}"
PREFIX=/opt/$NAME
UNIT=/etc/systemd/system/$NAME.service
CONF_DIR=/etc/$NAME
WEB_CONFIG=$CONF_DIR/web-config.yml
DEFAULTS=/etc/default/$NAME
STAMP=.infrascope-install-source
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Debian's own Python by default: one the service user can run (a pyenv or
# conda python3 first on root's PATH usually lives under /root)
if [ -n "${INSTALL_PYTHON:-}" ]; then
    PYTHON="$INSTALL_PYTHON"
elif [ -x /usr/bin/python3 ]; then
    PYTHON=/usr/bin/python3
else
    PYTHON=python3
fi
SKIP_USER="${SKIP_USER:-0}"
SKIP_SYSTEMCTL="${SKIP_SYSTEMCTL:-0}"
[ -n "$ROOT" ] && SKIP_SYSTEMCTL=1

say() { printf '%s: %s\n' "$NAME" "$*"; }
die() { printf '%s: error: %s\n' "$NAME" "$*" >&2; exit 1; }

usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

mode=install
docker=0
purge=0
package=""
core=""
while [ $# -gt 0 ]; do
    case "$1" in
        --uninstall) mode=uninstall ;;
        --core)
            [ $# -ge 2 ] || die "--core needs a path"
            core="$2"; shift ;;
        --core=*) core="${1#--core=}" ;;
        --purge) purge=1 ;;
        --docker) docker=1 ;;
        -h|--help) usage 0 ;;
        -*) printf '%s: unknown option %s\n' "$NAME" "$1" >&2; usage 2 ;;
        *) [ -z "$package" ] || die "only one PACKAGE, got $package and $1"; package="$1" ;;
    esac
    shift
done
[ "$purge" = 1 ] && [ "$mode" != uninstall ] && die "--purge goes with --uninstall"

if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0 ...)"
fi
if [ -z "$ROOT" ] && [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    distro="$(. /etc/os-release && echo "${ID:-} ${ID_LIKE:-}")"
    case " $distro " in
        *" debian "*|*" ubuntu "*) ;;
        *) say "warning: made for Debian and Ubuntu, this is '$distro'; going on" ;;
    esac
fi

systemd_running() {
    [ "$SKIP_SYSTEMCTL" != 1 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null
}

have_group() { getent group "$1" >/dev/null 2>&1; }
# No `| grep -q` under pipefail: an early grep exit can SIGPIPE the writer.
in_group() { case " $(id -nG "$NAME" 2>/dev/null) " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# The shipped /etc/default file.
defaults_text() {
    printf '%s\n' "# Extra flags for $NAME (see: $PREFIX/bin/$NAME --help), e.g." \
        '# ARGS="--web.listen-address=:8791 --no-collector.docker"' 'ARGS=""'
}

# install_file SRC DEST MODE [GROUP]: copy if the content differs; fix mode/group either way.
# Prints what it did; returns 0 if it wrote, 1 if the file was already right.
install_file() {
    local src="$1" dest="$ROOT$2" mode="$3" group="${4:-root}" wrote=1
    mkdir -p "$(dirname "$dest")"
    if [ ! -f "$dest" ] || ! cmp -s "$src" "$dest"; then
        install -m "$mode" "$src" "$dest.tmp.$$"
        mv -f "$dest.tmp.$$" "$dest"
        say "installed $2"
        wrote=0
    fi
    fix_file "$2" "$mode" "$group"
    return $wrote
}

# fix_file DEST MODE GROUP: mode MODE, owner root:GROUP (when root and GROUP exists).
fix_file() {
    local dest="$ROOT$1" mode="$2" group="$3"
    if [ "$(stat -c %a "$dest")" != "${mode#0}" ]; then
        chmod "$mode" "$dest"
        say "mode $mode on $1"
    fi
    if [ "$(id -u)" -eq 0 ]; then
        if ! have_group "$group"; then
            say "no group $group (SKIP_USER=1?): $1 stays group $(stat -c %G "$dest")"
        elif [ "$(stat -c %U:%G "$dest")" != "root:$group" ]; then
            chown "root:$group" "$dest"
            say "owner root:$group on $1"
        fi
    fi
}

# A digest of what would be installed, to skip pip when it is already in place.
source_digest() {
    "$PYTHON" - "$1" <<'PY'
import hashlib, os, sys
path = sys.argv[1]
h = hashlib.sha256()
if os.path.isdir(path):
    skip_dirs = {"__pycache__", "build", "dist", ".git", ".pytest_cache", ".mypy_cache",
                 ".ruff_cache", "tests"}
    for top, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in skip_dirs and not d.endswith(".egg-info"))
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(top, name)
            h.update(os.path.relpath(full, path).encode() + b"\0")
            with open(full, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
else:
    with open(path, "rb") as f:
        h.update(f.read())
print(h.hexdigest())
PY
}

do_install() {
    local changed=0 src digest venv="$ROOT$PREFIX"
    src="${package:-$HERE}"
    [ -e "$src" ] || die "no such package: $src"
    src="$(cd "$(dirname "$src")" && pwd)/$(basename "$src")"
    if [ -d "$src" ] && [ ! -f "$src/pyproject.toml" ]; then
        die "$src has no pyproject.toml: give the agent folder, a wheel or an sdist"
    fi
    if [ -z "$core" ]; then
        [ -f "$HERE/../core/pyproject.toml" ] \
            || die "infrascope-core not found beside $HERE: give --core PATH (core/ of the" \
                   "repository, a wheel or an sdist)"
        core="$HERE/../core"
    fi
    [ -e "$core" ] || die "no such core package: $core"
    core="$(cd "$(dirname "$core")" && pwd)/$(basename "$core")"
    if [ -d "$core" ] && [ ! -f "$core/pyproject.toml" ]; then
        die "$core has no pyproject.toml: give the core folder, a wheel or an sdist"
    fi
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found (apt-get install python3)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "the agent needs Python 3.11 or newer ($PYTHON is $("$PYTHON" -V 2>&1))"
    if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        if [ -z "$ROOT" ] && command -v apt-get >/dev/null; then
            say "installing python3-venv"
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
        else
            die "$PYTHON cannot create virtualenvs (apt-get install python3-venv)"
        fi
    fi

    # 1. the user
    if [ "$SKIP_USER" = 1 ]; then
        say "SKIP_USER=1: not touching users and groups"
    else
        if ! getent passwd "$NAME" >/dev/null; then
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin --comment "InfraScope agent" "$NAME"
            say "created system user $NAME"
            changed=1
        fi
        if [ "$docker" = 1 ]; then
            if ! have_group docker; then
                say "warning: no docker group (Docker not installed?): --docker has no effect"
            elif ! in_group docker; then
                usermod -a -G docker "$NAME"
                say "added $NAME to the docker group (Docker socket access)"
                changed=1
            fi
        elif have_group docker && in_group docker; then
            gpasswd -d "$NAME" docker >/dev/null
            say "removed $NAME from the docker group (install with --docker to keep it)"
            changed=1
        fi
    fi

    # 2. the virtualenv and the package
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
        say "creating the virtualenv $PREFIX"
        mkdir -p "$(dirname "$venv")"
        # shellcheck disable=SC2086 # word splitting of the extra arguments is intended
        "$PYTHON" -m venv ${INSTALL_VENV_ARGS:-} "$venv"
        rm -f "$venv/$STAMP"
    fi
    digest="$(source_digest "$src") $(source_digest "$core")"
    if [ -f "$venv/$STAMP" ] && [ "$(cat "$venv/$STAMP")" = "$digest" ]; then
        say "the agent in $PREFIX is up to date"
    else
        say "installing the agent from $src and infrascope-core from $core"
        rm -f "$venv/$STAMP"
        # same version number, new code: take the old ones out first (dependencies stay)
        "$venv/bin/python" -m pip uninstall --quiet --yes "$NAME" infrascope-core \
            >/dev/null 2>&1 || true
        # shellcheck disable=SC2086 # word splitting of the extra arguments is intended
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            --no-warn-script-location ${INSTALL_PIP_ARGS:-} "$core" "$src"
        printf '%s\n' "$digest" > "$venv/$STAMP"
        changed=1
    fi
    if [ -n "${INSTALL_SITE_PACKAGES:-}" ]; then
        local site pth
        site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        pth="$(mktemp)"
        printf '%s\n' "$INSTALL_SITE_PACKAGES" > "$pth"
        install_file "$pth" "${site#"$ROOT"}/_infrascope_extra_site.pth" 0644 || true
        rm -f "$pth"
    fi
    "$venv/bin/$NAME" --version >/dev/null || die "$PREFIX/bin/$NAME does not run"
    if [ "$SKIP_USER" != 1 ] && command -v runuser >/dev/null \
            && ! runuser -u "$NAME" -- "$venv/bin/python" -c '' 2>/dev/null; then
        die "user $NAME cannot run $PREFIX/bin/python (it points at $PYTHON; is that under" \
            "/root or /home?): give a system Python, INSTALL_PYTHON=/usr/bin/python3, and" \
            "remove $PREFIX first"
    fi

    # 3. the unit and the configuration
    install_file "$HERE/systemd/$NAME.service" "$UNIT" 0644 && changed=1
    if [ ! -e "$ROOT$WEB_CONFIG" ]; then
        install_file "$HERE/examples/web-config.yml" "$WEB_CONFIG" 0640 "$NAME" || true
        changed=1
    else
        # the operator's file: never overwritten, but readable by root and the agent only
        fix_file "$WEB_CONFIG" 0640 "$NAME"
    fi
    chmod 0755 "$ROOT$CONF_DIR"
    if [ ! -e "$ROOT$DEFAULTS" ]; then
        local defaults
        defaults="$(mktemp)"
        defaults_text > "$defaults"
        install_file "$defaults" "$DEFAULTS" 0644 || true
        rm -f "$defaults"
        changed=1
    fi

    # 4. systemd
    if systemd_running; then
        systemctl daemon-reload
        if [ "$changed" = 1 ] && systemctl is-active --quiet "$NAME"; then
            systemctl enable "$NAME" >/dev/null 2>&1
            systemctl restart "$NAME"
            say "restarted $NAME"
        else
            systemctl enable --now "$NAME"
        fi
        systemctl --no-pager --lines=0 status "$NAME" || true
    else
        say "systemd is not running here (or SKIP_SYSTEMCTL/INSTALL_ROOT is set):" \
            "not enabling or starting the service; later: systemctl daemon-reload &&" \
            "systemctl enable --now $NAME"
    fi
    say "done"
}

# remove_config FILE SHIPPED: remove FILE if unchanged from SHIPPED (or --purge).
remove_config() {
    local file="$ROOT$1" shipped="$2"
    [ -e "$file" ] || return 0
    if [ "$purge" = 1 ] || { [ -n "$shipped" ] && cmp -s "$file" "$shipped"; }; then
        rm -f "$file"
        say "removed $1"
    else
        say "kept $1 (edited; --purge removes it)"
    fi
}

do_uninstall() {
    if systemd_running; then
        systemctl disable --now "$NAME" 2>/dev/null || true
    fi
    if [ -e "$ROOT$UNIT" ]; then
        rm -f "$ROOT$UNIT"
        say "removed $UNIT"
    fi
    if systemd_running; then
        systemctl daemon-reload
        systemctl reset-failed "$NAME" 2>/dev/null || true
    fi
    if [ -d "$ROOT$PREFIX" ]; then
        rm -rf "$ROOT$PREFIX"
        say "removed $PREFIX"
    fi
    remove_config "$WEB_CONFIG" "$HERE/examples/web-config.yml"
    local defaults
    defaults="$(mktemp)"
    defaults_text > "$defaults"
    remove_config "$DEFAULTS" "$defaults"
    rm -f "$defaults"
    if rmdir "$ROOT$CONF_DIR" 2>/dev/null; then
        say "removed $CONF_DIR"
    fi
    if [ "$SKIP_USER" != 1 ] && getent passwd "$NAME" >/dev/null; then
        userdel "$NAME"
        say "removed user $NAME"
        if have_group "$NAME"; then
            groupdel "$NAME" 2>/dev/null || true
        fi
    fi
    say "uninstalled"
}

if [ "$mode" = uninstall ]; then
    do_uninstall
else
    do_install
fi
