"""The Prometheus/promtool runner on the real binaries: start, query, stop by pid;
an OpenMetrics file becomes a block promtool made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infrascope_core.prometheus import (
    Prometheus,
    PromtoolError,
    binaries_available,
    block_stats,
    promtool_blocks,
)

pytestmark = pytest.mark.skipif(not binaries_available(),
                                reason="prometheus/promtool not installed (make apt-deps)")


def test_a_block_from_openmetrics_is_queryable_and_the_server_stops_by_pid(tmp_path: Path
                                                                           ) -> None:
    om = tmp_path / "in.om"
    t0 = 1_700_006_400  # a multiple of 2 h: one block
    om.write_text("# TYPE demo_value gauge\n"
                  + "".join(f'demo_value{{server_id="1"}} {i} {t0 + 60 * i}\n'
                            for i in range(120))
                  + "# EOF\n")
    blocks = promtool_blocks(om, tmp_path / "data")
    assert len(blocks) == 1
    stats = block_stats(blocks[0])
    assert stats["minTime"] == t0 * 1000 and stats["stats"]["numSamples"] == 120
    with Prometheus(tmp_path / "data", retention="100000d") as prom:
        pid = prom.pid
        assert pid is not None
        assert prom.scalar('demo_value{server_id="1"}', at=t0 + 60 * 100) == 100.0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_promtool_failure_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.om"
    bad.write_text("not openmetrics at all\n")
    with pytest.raises(PromtoolError, match="bad.om"):
        promtool_blocks(bad, tmp_path / "data")
