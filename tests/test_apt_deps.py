"""scripts/ensure-apt-deps.sh — the first step of `make test` and `make demo`.

By the time pytest runs, `make test` has installed every package, so the script
must find them all, every time. It once piped `dpkg -s` into `grep -q` under
`set -o pipefail`: grep exiting at the Status line killed dpkg with SIGPIPE and
an installed package counted as missing about one time in four (a red CI run).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "ensure-apt-deps.sh"


def test_installed_packages_are_found_every_time() -> None:
    for attempt in range(25):
        run = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, (attempt, run.stdout, run.stderr)
        assert run.stdout == "" and run.stderr == "", (attempt, run.stdout, run.stderr)


def test_a_missing_package_is_named(tmp_path: Path) -> None:
    # A dpkg-query that knows the package only as removed (config files left),
    # and an `id` that says we are not root: the script names it and stops.
    (tmp_path / "dpkg-query").write_text(
        "#!/bin/sh\n"
        'for last; do :; done\n'
        'if [ "$last" = victoria-metrics ]; then printf "deinstall ok config-files"; '
        'else printf "install ok installed"; fi\n'
    )
    (tmp_path / "id").write_text("#!/bin/sh\necho 1000\n")
    for f in ("dpkg-query", "id"):
        (tmp_path / f).chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    run = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 1
    assert "missing Debian packages: victoria-metrics" in run.stderr
    assert "apt-get install -y --no-install-recommends victoria-metrics" in run.stderr
