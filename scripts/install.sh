#!/usr/bin/env bash
# Install InfraScope's server side (exporter, recommender, the infrascope command)
# as systemd services (Debian / Ubuntu), from the repository checkout this script
# is in.
#
#   sudo scripts/install.sh                        install or update
#   sudo scripts/install.sh --uninstall [--purge]  remove it again
#
# Installing (docs/install.md says more):
#   - system user and group infrascope (no login shell; home /var/lib/infrascope)
#   - a virtualenv /opt/infrascope/venv with core/, exporter/, recommender/ and
#     cli/ of this checkout in it (copied, built and installed: nothing is
#     written into the checkout), the rules pack in
#     /opt/infrascope/venv/share/infrascope/rules
#   - /usr/local/bin/infrascope, infrascope-exporter and recommender: links
#     into the virtualenv
#   - /etc/infrascope (root:infrascope 0751: Prometheus' user reaches its own 0600
#     files in it, nobody lists it) for `infrascope setup --config-dir
#     /etc/infrascope`, /var/lib/infrascope (infrascope 0750) for the
#     recommender's state
#   - /etc/systemd/system/infrascope-exporter.service and
#     infrascope-recommender.service (from systemd/ of the checkout); when
#     systemd is running: daemon-reload, enable, and a restart of a running
#     service whose unit or packages changed
# Running it again changes nothing that is already right. --uninstall removes
# all of it; /etc/infrascope and /var/lib/infrascope (and then the user, who
# owns them) stay if they hold anything, which --purge removes as well.
#
# Environment, for tests and special hosts:
#   SKIP_SYSTEMCTL=1      never call systemctl
#   INSTALL_PYTHON=PATH   Python that makes the virtualenv (default /usr/bin/python3)
#   INSTALL_PIP_ARGS=...  extra `pip install` arguments (e.g. --no-index --find-links DIR)
set -euo pipefail

NAME=infrascope
USER_NAME=infrascope
PREFIX=/opt/infrascope
VENV=$PREFIX/venv
SHARE=$VENV/share/infrascope
RULES_DIR=$SHARE/rules
DOCS=$PREFIX/docs/install.md
CONF_DIR=/etc/infrascope
STATE_DIR=/var/lib/infrascope
BIN_DIR=/usr/local/bin
UNIT_DIR=/etc/systemd/system
UNITS=(infrascope-exporter.service infrascope-recommender.service)
# the commands linked into /usr/local/bin, each to the virtualenv's own
LINKS=(infrascope infrascope-exporter recommender)
# the installable projects, in order: core first, the others depend on it
PROJECTS=(core exporter recommender cli)
DISTRIBUTIONS=(infrascope-core infrascope-exporter infrascope-recommender infrascope)
# the comment useradd gives the user: only a user carrying it is removed again
USER_COMMENT="InfraScope server side (scripts/install.sh)"
STAMP=$VENV/.infrascope-install-source
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Debian's own Python by default: one the service user can run (a pyenv or
# conda python3 first on root's PATH usually lives under /root)
if [ -n "${INSTALL_PYTHON:-}" ]; then
    PYTHON="$INSTALL_PYTHON"
elif [ -x /usr/bin/python3 ]; then
    PYTHON=/usr/bin/python3
else
    PYTHON=python3
fi
SKIP_SYSTEMCTL="${SKIP_SYSTEMCTL:-0}"

# temporary folders, removed however the script ends
WORK_DIRS=()
cleanup() { [ "${#WORK_DIRS[@]}" -eq 0 ] || rm -rf "${WORK_DIRS[@]}"; }
trap cleanup EXIT

say() { printf '%s: %s\n' "$NAME" "$*"; }
# note: say, unless QUIET=1 (a caller that sums up many files in one line)
note() { [ "${QUIET:-0}" = 1 ] || say "$@"; }
die() { printf '%s: error: %s\n' "$NAME" "$*" >&2; exit 1; }

usage() {
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

mode=install
purge=0
while [ $# -gt 0 ]; do
    case "$1" in
        --uninstall) mode=uninstall ;;
        --purge) purge=1 ;;
        -h|--help) usage 0 ;;
        *) printf '%s: unknown argument %s\n' "$NAME" "$1" >&2; usage 2 ;;
    esac
    shift
done
[ "$purge" = 1 ] && [ "$mode" != uninstall ] && die "--purge goes with --uninstall"

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0 ...)"
if [ -r /etc/os-release ]; then
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
have_user() { getent passwd "$1" >/dev/null 2>&1; }
# ours: a user that install.sh created (its comment says so)
our_user() { [ "$(getent passwd "$USER_NAME" | cut -d: -f5)" = "$USER_COMMENT" ]; }

# install_file SRC DEST MODE: copy if the content differs, fix the mode either way
# (owner root:root). Returns 0 if it changed something, 1 if all was right.
install_file() {
    local src="$1" dest="$2" mode="$3" changed=1
    mkdir -p "$(dirname "$dest")"
    if [ ! -f "$dest" ] || [ -L "$dest" ] || ! cmp -s "$src" "$dest"; then
        install -m "$mode" "$src" "$dest.tmp.$$"
        mv -f "$dest.tmp.$$" "$dest"
        note "installed $dest"
        changed=0
    fi
    fix_owner_mode "$dest" root root "$mode" && changed=0
    return $changed
}

# fix_owner_mode PATH USER GROUP MODE: returns 0 if it changed something.
fix_owner_mode() {
    local path="$1" owner="$2" group="$3" mode="$4" changed=1
    if [ "$(stat -c %U:%G "$path")" != "$owner:$group" ]; then
        chown "$owner:$group" "$path"
        note "owner $owner:$group on $path"
        changed=0
    fi
    if [ "$(stat -c %a "$path")" != "${mode#0}" ]; then
        chmod "$mode" "$path"
        note "mode $mode on $path"
        changed=0
    fi
    return $changed
}

# ensure_dir PATH USER GROUP MODE
ensure_dir() {
    if [ ! -d "$1" ]; then
        install -d -m "$4" -o "$2" -g "$3" "$1"
        say "created $1"
    else
        fix_owner_mode "$@" || true
    fi
}

# A digest of what would be installed (the projects' files and the Python), to
# skip pip when exactly that is in place already.
source_digest() {
    "$PYTHON" - "$REPO" "${PROJECTS[@]}" <<'PY'
import hashlib, os, sys
repo, projects = sys.argv[1], sys.argv[2:]
h = hashlib.sha256(sys.version.encode() + b"\0" + os.path.realpath(sys.executable).encode())
skip_dirs = {"__pycache__", "build", "dist", ".git", ".pytest_cache", ".mypy_cache",
             ".ruff_cache", "tests"}
for project in projects:
    root = os.path.join(repo, project)
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip_dirs and not d.endswith(".egg-info"))
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(top, name)
            h.update(os.path.relpath(full, repo).encode() + b"\0")
            with open(full, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
print(h.hexdigest())
PY
}

# pip_install_projects: build and install the projects from a copy of the checkout
# (pip builds setuptools projects in place: build/ and *.egg-info would otherwise
# appear, root-owned, in the checkout).
pip_install_projects() {
    local work project
    work="$(mktemp -d)"
    WORK_DIRS+=("$work")
    for project in "${PROJECTS[@]}"; do
        mkdir -p "$work/$project"
        tar -C "$REPO/$project" --exclude=__pycache__ --exclude='*.egg-info' \
            --exclude=build --exclude=dist --exclude=tests --exclude='*.pyc' -cf - . \
            | tar -C "$work/$project" -xf -
    done
    local pip=("$VENV/bin/python" -m pip)
    # shellcheck disable=SC2206 # word splitting of the extra arguments is intended
    local args=(--quiet --disable-pip-version-check --no-warn-script-location
                ${INSTALL_PIP_ARGS:-})
    # same version number, new code: take the old ones out first (dependencies stay)
    "${pip[@]}" uninstall --quiet --yes "${DISTRIBUTIONS[@]}" >/dev/null 2>&1 || true
    # The build backend once, in the virtualenv, instead of a fresh isolated copy per
    # project (four downloads); 70.1 builds wheels without the wheel package.
    "${pip[@]}" install "${args[@]}" 'setuptools>=70.1'
    # core first on its own: exporter, recommender and cli depend on it by name
    "${pip[@]}" install "${args[@]}" --no-build-isolation "$work/core"
    # the rest together: cli depends on exporter and recommender by name too
    "${pip[@]}" install "${args[@]}" --no-build-isolation \
        "$work/exporter" "$work/recommender" "$work/cli"
}

# sync_files SRC DEST PATTERN WHAT: the files of SRC matching PATTERN into DEST,
# exactly (files no longer in SRC go). Returns 0 if it changed something.
sync_files() {
    local src="$1" dest="$2" pattern="$3" what="$4" f base written=0 removed=0
    compgen -G "$src/$pattern" >/dev/null || die "no $pattern in $src"
    ensure_dir "$dest" root root 0755
    for f in "$src"/$pattern; do
        QUIET=1 install_file "$f" "$dest/$(basename "$f")" 0644 && written=$((written + 1))
    done
    for f in "$dest"/*; do
        # folders are other sync_files calls' (alertmanager/templates)
        if [ ! -e "$f" ] || [ -d "$f" ]; then continue; fi
        base="$(basename "$f")"
        # shellcheck disable=SC2053 # the pattern is a glob on purpose
        if [ ! -f "$src/$base" ] || [[ "$base" != $pattern ]]; then
            rm -rf "$f"
            removed=$((removed + 1))
        fi
    done
    [ "$written" -eq 0 ] && [ "$removed" -eq 0 ] && return 1
    say "$what in $dest: $written file(s) installed, $removed removed"
}

# sync_share: what `infrascope setup` copies into a configuration — the rules pack and
# Alertmanager's shipped configuration and templates. Returns 0 if it changed something.
sync_share() {
    local changed=1
    sync_files "$REPO/prometheus/rules" "$RULES_DIR" "*.rules.yml" "rules pack" && changed=0
    sync_files "$REPO/alertmanager" "$SHARE/alertmanager" "alertmanager.yml" \
        "Alertmanager configuration" && changed=0
    sync_files "$REPO/alertmanager/templates" "$SHARE/alertmanager/templates" "*.tmpl" \
        "Alertmanager templates" && changed=0
    return "$changed"
}

# link_conflicts: the commands in /usr/local/bin that are someone else's (a file,
# or a link that does not point into the prefix); checked before anything is done.
link_conflicts() {
    local cmd link
    for cmd in "${LINKS[@]}"; do
        link="$BIN_DIR/$cmd"
        if [ -e "$link" ] || [ -L "$link" ]; then
            case "$(readlink "$link" 2>/dev/null || true)" in
                "$PREFIX"/*) ;;  # ours (or an older one of ours)
                *) printf '%s\n' "$link" ;;
            esac
        fi
    done
}

# link_command NAME: /usr/local/bin/NAME -> the virtualenv's NAME. Returns 0 if
# it changed something.
link_command() {
    local link="$BIN_DIR/$1" target="$VENV/bin/$1"
    [ -x "$target" ] || die "$target missing after the install"
    if [ -L "$link" ] && [ "$(readlink "$link")" = "$target" ]; then
        return 1
    fi
    mkdir -p "$BIN_DIR"
    ln -sfn "$target" "$link"
    say "linked $link -> $target"
}

do_install() {
    local changed=0 digest unit cmd
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found (apt-get install python3)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "InfraScope needs Python 3.11 or newer ($PYTHON is $("$PYTHON" -V 2>&1))"
    if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        if command -v apt-get >/dev/null; then
            say "installing python3-venv"
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
        else
            die "$PYTHON cannot create virtualenvs (apt-get install python3-venv)"
        fi
    fi
    for unit in "${UNITS[@]}"; do
        [ -f "$REPO/systemd/$unit" ] || die "$REPO/systemd/$unit missing: run from a full checkout"
    done
    local conflicts
    conflicts="$(link_conflicts | tr '\n' ' ')"
    [ -z "$conflicts" ] || die "not a link into $PREFIX, so not overwritten: ${conflicts% }" \
        "(another program of that name?): remove or rename it, then run again"

    # 1. the user
    if ! have_user "$USER_NAME"; then
        have_group "$USER_NAME" && die "a group $USER_NAME exists without a user" \
            "$USER_NAME: remove the group (groupdel $USER_NAME) or create the user yourself"
        useradd --system --user-group --no-create-home --no-log-init --home-dir "$STATE_DIR" \
            --shell /usr/sbin/nologin --comment "$USER_COMMENT" "$USER_NAME"
        say "created system user $USER_NAME"
        changed=1
    fi

    # 2. the directories
    ensure_dir "$CONF_DIR" root "$USER_NAME" 0751
    ensure_dir "$STATE_DIR" "$USER_NAME" "$USER_NAME" 0750

    # 3. the virtualenv and the packages
    ensure_dir "$PREFIX" root root 0755
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
        say "creating the virtualenv $VENV"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
        changed=1
    fi
    digest="$(source_digest)"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$digest" ]; then
        say "the packages in $VENV are up to date"
    else
        say "installing ${PROJECTS[*]} from $REPO into $VENV (about a minute)"
        rm -f "$STAMP"
        pip_install_projects
        printf '%s\n' "$digest" > "$STAMP"
        changed=1
    fi
    # the rules pack and Alertmanager's files are the infrascope command's (history load,
    # setup), not the services'
    sync_share || true
    install_file "$REPO/docs/install.md" "$DOCS" 0644 || true
    for cmd in "${LINKS[@]}"; do
        link_command "$cmd" || true
    done
    # the service user must be able to run the virtualenv's Python
    if command -v runuser >/dev/null \
            && ! runuser -u "$USER_NAME" -- "$VENV/bin/python" -c '' 2>/dev/null; then
        die "user $USER_NAME cannot run $VENV/bin/python (it points at $PYTHON; is that" \
            "under /root or /home?): give a system Python, INSTALL_PYTHON=/usr/bin/python3"
    fi
    for cmd in infrascope infrascope-exporter recommender; do
        "$VENV/bin/$cmd" --help >/dev/null || die "$VENV/bin/$cmd does not run"
    done

    # 4. the units; a running service is restarted when its unit or anything they
    # share (the user, the packages) changed
    local restart=()
    for unit in "${UNITS[@]}"; do
        if install_file "$REPO/systemd/$unit" "$UNIT_DIR/$unit" 0644 || [ "$changed" = 1 ]; then
            restart+=("$unit")
        fi
    done

    # 5. systemd
    if systemd_running; then
        systemctl daemon-reload
        for unit in "${UNITS[@]}"; do
            systemctl enable --quiet "$unit"
        done
        for unit in "${restart[@]}"; do
            if systemctl is-active --quiet "$unit"; then
                systemctl restart "$unit"
                say "restarted $unit"
            fi
        done
        say "enabled ${UNITS[*]} (they start at boot once $CONF_DIR/exporter.yml and" \
            "recommender.yml exist); now: systemctl start ${UNITS[*]}"
    else
        say "systemd is not running here (or SKIP_SYSTEMCTL=1): units installed, not" \
            "enabled; later: systemctl daemon-reload && systemctl enable --now ${UNITS[*]}"
    fi
    if [ ! -e "$CONF_DIR/exporter.yml" ] || [ ! -e "$CONF_DIR/recommender.yml" ]; then
        say "next: infrascope setup --config-dir $CONF_DIR (docs/install.md)"
    fi
    say "done"
}

# remove_dir_unless_used DIR: remove DIR if empty, or with --purge. Returns 0 if gone.
remove_dir_unless_used() {
    [ -e "$1" ] || return 0
    if [ "$purge" = 1 ]; then
        rm -rf "$1"
        say "removed $1 (--purge)"
    elif rmdir "$1" 2>/dev/null; then
        say "removed $1"
    else
        say "kept $1: it holds files (--purge removes them)"
        return 1
    fi
}

do_uninstall() {
    local unit cmd link kept=0
    if systemd_running; then
        for unit in "${UNITS[@]}"; do
            systemctl disable --now --quiet "$unit" 2>/dev/null || true
        done
    fi
    for unit in "${UNITS[@]}"; do
        if [ -e "$UNIT_DIR/$unit" ]; then
            rm -f "$UNIT_DIR/$unit"
            say "removed $UNIT_DIR/$unit"
        fi
    done
    if systemd_running; then
        systemctl daemon-reload
        systemctl reset-failed "${UNITS[@]}" 2>/dev/null || true
    fi
    for cmd in "${LINKS[@]}"; do
        link="$BIN_DIR/$cmd"
        if [ -L "$link" ]; then
            case "$(readlink "$link")" in
                "$PREFIX"/*) rm -f "$link"; say "removed $link" ;;
                *) say "kept $link: it does not point into $PREFIX" ;;
            esac
        fi
    done
    if [ -d "$PREFIX" ]; then
        rm -rf "$PREFIX"
        say "removed $PREFIX"
    fi
    remove_dir_unless_used "$CONF_DIR" || kept=1
    remove_dir_unless_used "$STATE_DIR" || kept=1
    if have_user "$USER_NAME"; then
        if ! our_user; then
            say "kept user $USER_NAME: not created by this script"
        elif [ "$kept" = 1 ]; then
            say "kept user $USER_NAME: it owns the files kept above"
        else
            userdel "$USER_NAME"
            say "removed user $USER_NAME"
            if have_group "$USER_NAME"; then
                groupdel "$USER_NAME"
                say "removed group $USER_NAME"
            fi
        fi
    fi
    say "uninstalled"
}

if [ "$mode" = uninstall ]; then
    do_uninstall
else
    do_install
fi
