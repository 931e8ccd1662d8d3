"""The same rule files load in vmalert (the scale-out path): `vmalert -dryRun`.

vmalert parses every expression as MetricsQL and every annotation as a template with
its own function set, so this catches PromQL-only syntax and template functions it
lacks.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from rules_testlib import RULE_FILES, RULES_DIR, needs_vmalert

from infrascope_core.service import run_tool
from infrascope_core.victoriametrics import VMALERT

pytestmark = needs_vmalert


def dry_run(pattern: str) -> subprocess.CompletedProcess[str]:
    return run_tool([VMALERT, "-dryRun", f"-rule={pattern}", "-loggerLevel=ERROR"],
                    timeout=60)


def test_vmalert_dry_run_loads_the_rules() -> None:
    proc = dry_run(str(RULES_DIR / "*.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vmalert_dry_run_rejects_a_broken_file(tmp_path: Path) -> None:
    """Control: the dry run really validates (expressions and templates)."""
    for path in RULE_FILES:
        shutil.copy(path, tmp_path / path.name)
    alerts = tmp_path / "infrascope-alerts.rules.yml"
    alerts.write_text(alerts.read_text().replace("humanizePercentage", "noSuchFunction", 1))
    assert dry_run(str(tmp_path / "*.yml")).returncode != 0
    alerts.write_text(alerts.read_text().replace("noSuchFunction", "humanizePercentage"))
    assert dry_run(str(tmp_path / "*.yml")).returncode == 0
    recording = sorted(tmp_path.glob("infrascope-utilisation-30d*.rules.yml"))[0]
    recording.write_text(recording.read_text().replace("[30d])", "[30d]", 1))
    proc = dry_run(str(tmp_path / "*.yml"))
    assert proc.returncode != 0
    assert "invalid expression" in proc.stdout + proc.stderr
