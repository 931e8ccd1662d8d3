"""``infrascope history load``: 30 days of history into Prometheus, the one pipeline.

Every way history reaches a Prometheus goes through here — a real installation,
``make demo``, compose's ``history`` service, the rules benchmark and the tests:

1. **Hetzner's 30 days** (unless ``--no-backfill``): the exporter's own backfill
   (``infrascope-exporter backfill``) reads the Cloud metrics Hetzner keeps and the
   inventory, paced inside the exporter's request budget, and writes OpenMetrics.
   Other OpenMetrics files (``--openmetrics``: e.g. what agents recorded) are turned
   into blocks while it runs.
2. **Blocks**: ``promtool tsdb create-blocks-from openmetrics`` per file, the blocks
   moved into Prometheus' data directory.
3. **Recording-rule passes**: the rules pack's per-minute and hourly groups
   (:data:`~.rulespack.BACKFILL_GROUPS`) split into dependency passes
   (:func:`~.rulespack.split_passes`); each rule of a pass is evaluated over the range
   by its own ``promtool tsdb create-blocks-from rules``, in parallel, against a
   Prometheus that has loaded the blocks of the pass before; the blocks are moved in.
   With ``--prometheus-url`` that is the running Prometheus (it loads new blocks within
   a minute; this waits for it); without, Prometheus must be stopped and a temporary
   one runs on the data directory for the passes.
4. Prometheus evaluates the 30-day figures, tiers and costs over that history itself.

The range is fixed at the first run and kept in ``WORK_DIR/state.json`` with every
step done, so an interrupted load resumes where it stopped (``--restart`` starts over).
``--dry-run`` prints the plan and changes nothing. On a terminal progress is a bar;
otherwise one plain line per step.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import yaml

from infrascope_core.durations import parse_duration
from infrascope_core.errors import ConfigError
from infrascope_core.prometheus import (
    PROMTOOL,
    Prometheus,
    PrometheusError,
    PromtoolError,
    promtool_blocks,
    run_tool,
    terminate_tools,
)

from . import rulespack

NAME = "history"
HELP = "load 30 days of history into Prometheus (Hetzner's kept metrics, agents' files, " \
       "the recording rules over them)"

DAY = 86_400
STEP = 300  # the exporter backfill's step
END_OFFSET = 3 * 3600  # Prometheus' head block holds the last ~3 hours: stay out of it
OM_BLOCK = "1458h"  # the largest block promtool makes: the file is read once per block
RULES_BLOCK = "486h"  # 5832 steps of 5 minutes per range query (< Prometheus' 11,000)
MIN_RETENTION_MARGIN = 5 * DAY  # retention must cover the range and this margin
RELOAD_TIMEOUT = 300.0  # a running Prometheus reloads blocks every minute
STATE_VERSION = 1


class HistoryError(Exception):
    """The load cannot go on; the message says why and what to do."""


# --------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------
def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> int:
    """RFC 3339 (``2026-12-07T09:00:00Z``) or Unix seconds."""
    try:
        return int(float(text))
    except ValueError:
        pass
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError as exc:
        raise HistoryError(f"{text!r} is neither RFC 3339 nor Unix seconds") from exc


def plan_range(now: float, days: float, end: int | None = None) -> tuple[int, int]:
    """(start, end) on the 5-minute grid, ending at least 3 hours before ``now``."""
    latest = math.floor((now - END_OFFSET) / STEP) * STEP
    if end is None:
        end = latest
    elif end > latest:
        raise HistoryError(f"--end {iso(end)} is later than {iso(latest)}: the history must "
                           "end at least 3 hours ago (Prometheus' head block)")
    else:
        end = math.floor(end / STEP) * STEP
    start = math.ceil((end - days * DAY) / STEP) * STEP
    return start, end


# --------------------------------------------------------------------------------------
# Progress: a bar on a terminal, plain lines otherwise
# --------------------------------------------------------------------------------------
class Progress:
    """Steps done out of a total, with what runs now.

    On a terminal (``mode="bar"``) one line redrawn in place; otherwise (``"lines"``)
    one line per change of step, so a log or CI output stays readable; ``"none"``
    prints nothing.
    """

    WIDTH = 28

    def __init__(self, total: int, mode: str = "auto", stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "lines"
        self.mode = mode
        self.total = max(1, total)
        self.done = 0
        self.fraction = 0.0  # of the step running now
        self.what = ""
        self.started = time.monotonic()
        self.last_line = self.started
        self.lock = threading.Lock()

    def step(self, what: str) -> None:
        """A step starts (shown on the bar; a plain line says when it is done)."""
        with self.lock:
            self.what, self.fraction = what, 0.0
            self._show(line=False)

    def partial(self, fraction: float, what: str | None = None) -> None:
        """How far the running step is; as a plain line at most every 10 s."""
        with self.lock:
            self.fraction = min(1.0, max(0.0, fraction))
            if what is not None:
                self.what = what
            now = time.monotonic()
            line = now - self.last_line >= 10.0
            if line:
                self.last_line = now
            self._show(line=line)

    def finish(self, what: str) -> None:
        with self.lock:
            self.done += 1
            self.what, self.fraction = what, 0.0
            self._show(line=True)

    def close(self) -> None:
        if self.mode == "bar":
            self.stream.write("\n")
            self.stream.flush()

    def _show(self, line: bool) -> None:
        if self.mode == "none":
            return
        elapsed = time.monotonic() - self.started
        share = min(1.0, (self.done + self.fraction) / self.total)
        if self.mode == "bar":
            filled = round(share * self.WIDTH)
            text = (f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {share:4.0%} "
                    f"{self.done}/{self.total} {elapsed:5.0f}s  {self.what}")
            self.stream.write(text[:160].ljust(100))
        elif line:
            self.stream.write(f"history: [{self.done}/{self.total}] {elapsed:.0f}s "
                              f"{self.what}\n")
        self.stream.flush()


# --------------------------------------------------------------------------------------
# Resumable state
# --------------------------------------------------------------------------------------
@dataclass
class State:
    """What is done, kept in ``WORK_DIR/state.json`` (written atomically after each step)."""

    path: Path
    start: int
    end: int
    done: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, work_dir: Path, start: int, end: int, restart: bool) -> State:
        path = work_dir / "state.json"
        if path.exists() and not restart:
            try:
                data = json.loads(path.read_text())
                if data.get("version") != STATE_VERSION:
                    raise ValueError(f"version {data.get('version')}")
                return cls(path, int(data["start"]), int(data["end"]), list(data["done"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise HistoryError(f"{path}: not a state file of this version ({exc}): "
                                   "--restart starts over") from exc
        state = cls(path, start, end)
        state.save()
        return state

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"version": STATE_VERSION, "start": self.start,
                                   "end": self.end, "done": self.done}, indent=1) + "\n")
        os.replace(tmp, self.path)

    def is_done(self, step: str) -> bool:
        return step in self.done

    def mark(self, step: str) -> None:
        if step not in self.done:
            self.done.append(step)
            self.save()


# --------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------
def blocks_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if (p / "meta.json").is_file()) \
        if folder.is_dir() else []


def move_blocks(folder: Path, data_dir: Path) -> int:
    """Move the complete blocks of ``folder`` into ``data_dir`` (owned like it)."""
    owner = data_dir.stat()
    moved = 0
    for block in blocks_in(folder):
        target = data_dir / block.name
        shutil.move(str(block), str(target))
        if os.geteuid() == 0 and (owner.st_uid, owner.st_gid) != (0, 0):
            for path in [target, *target.rglob("*")]:
                os.chown(path, owner.st_uid, owner.st_gid)
        moved += 1
    return moved


def openmetrics_to_blocks(source: Path, out: Path, *, block: str = OM_BLOCK,
                          promtool: str = PROMTOOL, timeout: float | None = None
                          ) -> list[Path]:
    """``promtool tsdb create-blocks-from openmetrics`` into the fresh folder ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    return promtool_blocks(source, out, f"--max-block-duration={block}", timeout=timeout,
                           binary=promtool)


def rules_to_blocks(rule_file: Path, out: Path, url: str, start: int, end: int, *,
                    block: str = RULES_BLOCK, promtool: str = PROMTOOL,
                    timeout: float | None = None) -> list[Path]:
    """``promtool tsdb create-blocks-from rules`` over ``[start, end]`` against ``url``."""
    shutil.rmtree(out, ignore_errors=True)
    proc = run_tool([promtool, "tsdb", "create-blocks-from", "rules",
                     "--start", iso(start), "--end", iso(end), "--url", url,
                     "--output-dir", str(out), f"--max-block-duration={block}",
                     str(rule_file)], timeout=timeout)
    if proc.returncode != 0:
        raise PromtoolError(f"promtool (rules) exited with {proc.returncode} on "
                            f"{rule_file.name}: {(proc.stderr or proc.stdout)[-3000:]}")
    return blocks_in(out)


# --------------------------------------------------------------------------------------
# The Prometheus the passes query
# --------------------------------------------------------------------------------------
def prometheus_on(data_dir: Path) -> list[int]:
    """Pids of Prometheus servers whose ``--storage.tsdb.path`` is ``data_dir``."""
    want = data_dir.resolve()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = (entry / "cwd").resolve()
        except OSError:
            continue
        if not argv or not Path(argv[0].decode(errors="replace")).name.startswith("prometheus"):
            continue
        args = [a.decode(errors="replace") for a in argv[1:]]
        for i, arg in enumerate(args):
            value = None
            if arg.startswith(("--storage.tsdb.path=", "-storage.tsdb.path=")):
                value = arg.split("=", 1)[1]
            elif arg in ("--storage.tsdb.path", "-storage.tsdb.path") and i + 1 < len(args):
                value = args[i + 1]
            if value is not None and (cwd / value).resolve() == want:
                pids.append(int(entry.name))
    return pids


def _get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return bytes(r.read())


class RunningPrometheus:
    """The user's Prometheus, running: passes query it; it loads the moved blocks itself
    (every minute), which :meth:`loaded` waits for."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def flags(self) -> dict[str, str]:
        try:
            body = json.loads(_get(self.url + "/api/v1/status/flags"))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise HistoryError(f"Prometheus at {self.url} does not answer "
                               f"/api/v1/status/flags: {exc}") from exc
        return {str(k): str(v) for k, v in (body.get("data") or {}).items()}

    def check(self, data_dir: Path | None, start: int) -> Path:
        """Its data directory (``data_dir`` or the one it reports), after checking that
        its retention keeps ``start``."""
        flags = self.flags()
        reported = flags.get("storage.tsdb.path", "")
        if data_dir is None:
            if not reported or not Path(reported).is_absolute():
                raise HistoryError(f"Prometheus at {self.url} reports its data directory as "
                                   f"{reported!r}: give --data-dir")
            data_dir = Path(reported)
        try:
            retention = parse_duration(flags.get("storage.tsdb.retention.time", "0s"),
                                       "storage.tsdb.retention.time", prometheus=True,
                                       allow_zero=True)
        except ConfigError as exc:
            raise HistoryError(f"Prometheus at {self.url} reports {exc}") from None
        if retention == 0 and flags.get("storage.tsdb.retention.size", "0B") in ("0B", "0"):
            retention = 15 * DAY  # Prometheus' default
        need = time.time() - start + MIN_RETENTION_MARGIN
        if retention and retention < need:
            raise HistoryError(
                f"Prometheus at {self.url} keeps {retention / DAY:g} days "
                f"(--storage.tsdb.retention.time): it would delete the history. Restart it "
                f"with --storage.tsdb.retention.time={math.ceil(need / DAY)}d or more")
        return data_dir

    def reloads(self) -> float:
        text = _get(self.url + "/metrics").decode(errors="replace")
        m = re.search(r"^prometheus_tsdb_reloads_total (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def loaded(self, before: float, timeout: float = RELOAD_TIMEOUT) -> None:
        """Wait until Prometheus has reloaded its blocks since ``before`` was read."""
        deadline = time.monotonic() + timeout
        while self.reloads() <= before:
            if time.monotonic() > deadline:
                raise HistoryError(f"Prometheus at {self.url} has not loaded the new blocks "
                                   f"after {timeout:.0f} s")
            time.sleep(1.0)


# --------------------------------------------------------------------------------------
# The plan and the load
# --------------------------------------------------------------------------------------
def rule_step(n: int, rule_file: dict[str, Any]) -> str:
    """A rule's step in the state: its pass, group, record and a digest of the rule — not
    its position, so a rules pack that gained or lost rules since an interrupted load
    resumes right, and two rules recording one name are two steps."""
    group = rule_file["groups"][0]
    rule = group["rules"][0]
    digest = hashlib.sha256(json.dumps(rule, sort_keys=True, default=str).encode())
    return f"pass-{n}:{group['name']}:{rule['record']}:{digest.hexdigest()[:8]}"


@dataclass
class Plan:
    data_dir: Path
    work_dir: Path
    rules_dir: Path
    start: int
    end: int
    openmetrics: list[Path]  # files, or folders whose *.om files are loaded
    backfill: list[str] | None  # the exporter backfill's command, or None
    prometheus_url: str | None  # a running Prometheus, or None: a temporary one
    jobs: int
    passes: list[dict[str, Any]]
    temporary_retention: str = "400d"
    log_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_dir = self.work_dir / "logs"

    @property
    def build_dir(self) -> Path:
        """Where the blocks are made and the passes' temporary Prometheus runs: the data
        directory itself when Prometheus is stopped; with a running one, a private
        folder whose blocks are moved into the data directory at the end (one reload
        to wait for, and the running server never sees half a history)."""
        return self.work_dir / "blocks" if self.prometheus_url else self.data_dir

    @property
    def hetzner_file(self) -> Path:
        return self.work_dir / "hetzner.om"

    def extra_files(self) -> list[Path]:
        """The ``--openmetrics`` files, a folder standing for the ``*.om`` files in it
        (read when the load runs: another process may have written them since)."""
        out: list[Path] = []
        for path in self.openmetrics:
            out += sorted(path.glob("*.om")) if path.is_dir() else [path]
        return out

    def inputs(self) -> list[Path]:
        return [*([self.hetzner_file] if self.backfill else []), *self.extra_files()]

    def steps(self) -> list[str]:
        out = ["backfill"] if self.backfill else []
        out += [f"blocks:{p.name}" for p in self.inputs()]
        for n, doc in enumerate(self.passes, start=1):
            out += [rule_step(n, rule) for rule in rulespack.one_rule_files(doc)]
        if self.prometheus_url:
            out.append("publish")
        return out

    def describe(self) -> str:
        q = shlex.quote
        lines = [f"history load plan: {iso(self.start)} .. {iso(self.end)} "
                 f"({(self.end - self.start) / DAY:.2f} days) into {self.data_dir}",
                 f"  work dir {self.work_dir} (state.json: resumable)"]
        if self.backfill:
            lines.append("  1. Hetzner's kept metrics and the inventory, paced within the "
                         "request budget:")
            lines.append("       " + " ".join(q(a) for a in self.backfill))
        for path in self.inputs():
            lines.append(f"  blocks from {path} (promtool, --max-block-duration={OM_BLOCK})")
        where = (f"a temporary Prometheus on {self.build_dir}" if self.prometheus_url else
                 "a temporary Prometheus on the data directory (Prometheus must be stopped)")
        for n, doc in enumerate(self.passes, start=1):
            records = [str(r["record"]) for g in doc["groups"] for r in g["rules"]]
            lines.append(f"  rule pass {n}: {len(records)} recording rules against {where}:")
            lines += [f"       {r}" for r in records]
        if self.prometheus_url:
            lines.append(f"  every block moved into {self.data_dir}, then the running "
                         f"Prometheus at {self.prometheus_url} loads them (within a minute)")
        lines.append(f"  promtool processes in parallel: {self.jobs}")
        return "\n".join(lines)


@dataclass
class Summary:
    start: int
    end: int
    blocks: int = 0
    rule_blocks: int = 0
    resumed: int = 0
    seconds: float = 0.0
    empty_rules: list[str] = field(default_factory=list)  # no input in the range


def _check_stopped(plan: Plan) -> None:
    """Without --prometheus-url the temporary Prometheus needs the data directory alone
    (two servers on one TSDB corrupt it; Debian's Prometheus takes no lock file)."""
    pids = prometheus_on(plan.data_dir)
    if pids:
        raise HistoryError(f"Prometheus (pid {', '.join(map(str, pids))}) runs on "
                           f"{plan.data_dir}: stop it, or give --prometheus-url to load into "
                           "it while it runs")


@contextmanager
def _passes_prometheus(plan: Plan) -> Iterator[tuple[str, Callable[[], None]]]:
    """A temporary Prometheus on the build folder: (its URL, a function that makes it
    load the blocks moved in since it started)."""
    temp = Prometheus(plan.build_dir, config="scrape_configs: []\n",
                      workdir=plan.work_dir / "prometheus",
                      retention=plan.temporary_retention, ready_timeout=300)
    try:
        temp.start()
    except PrometheusError as exc:
        raise HistoryError(f"the temporary Prometheus on {plan.build_dir} did not start: "
                           f"{exc}") from exc

    def reload_temporary() -> None:
        temp.restart()  # loads every block in the folder

    try:
        yield temp.url, reload_temporary
    finally:
        temp.stop()


@contextmanager
def _stopped_on_error(pool: ThreadPoolExecutor) -> Iterator[None]:
    """On a failure or an interrupt: the steps not started are cancelled and the
    promtool processes running are stopped, so that leaving the executor does not wait
    for work whose result nobody will use."""
    try:
        yield
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        terminate_tools()
        raise


_PROGRESS = re.compile(r"event=backfill_progress\b.*?servers_done=(\d+) servers_total=(\d+)")


def _run_backfill(plan: Plan, progress: Progress) -> None:
    """The exporter's backfill as a subprocess; its log to ``logs/backfill.log``."""
    assert plan.backfill is not None
    log_path = plan.log_dir / "backfill.log"
    with open(log_path, "a", encoding="utf-8") as log:
        proc = subprocess.Popen(plan.backfill, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True, errors="replace")
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                m = _PROGRESS.search(line)
                if m and int(m.group(2)):
                    progress.partial(int(m.group(1)) / int(m.group(2)),
                                     f"Hetzner backfill: {m.group(1)}/{m.group(2)} servers")
            code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    if code != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-12:]
        raise HistoryError(f"infrascope-exporter backfill exited with {code} (log "
                           f"{log_path}):\n  " + "\n  ".join(tail))
    if not plan.hetzner_file.is_file():
        raise HistoryError(f"infrascope-exporter backfill wrote no {plan.hetzner_file}")


def load(plan: Plan, *, restart: bool = False, progress_mode: str = "auto",
         stream: IO[str] | None = None) -> Summary:
    """Run the plan (resuming what a state file says is done); see the module docstring."""
    started = time.monotonic()
    plan.work_dir.mkdir(parents=True, exist_ok=True)
    plan.log_dir.mkdir(parents=True, exist_ok=True)
    if not plan.data_dir.is_dir():
        raise HistoryError(f"--data-dir {plan.data_dir} is not a directory")
    if not plan.prometheus_url:
        _check_stopped(plan)
    plan.build_dir.mkdir(exist_ok=True)
    state = State.open(plan.work_dir, plan.start, plan.end, restart)
    if (state.start, state.end) != (plan.start, plan.end):
        plan.start, plan.end = state.start, state.end  # a resumed load keeps its range
    steps = plan.steps()
    summary = Summary(plan.start, plan.end, resumed=sum(map(state.is_done, steps)))
    progress = Progress(len(steps), progress_mode, stream)
    progress.done = summary.resumed
    jobs = max(1, plan.jobs)
    lock = threading.Lock()

    def convert(path: Path) -> None:
        step = f"blocks:{path.name}"
        if state.is_done(step):
            return
        out = plan.work_dir / f"blocks-{path.stem}"
        if not state.is_done(step + ":converted"):
            progress.step(f"blocks from {path.name}")
            if not path.is_file():
                raise HistoryError(f"{path}: no such file")
            if not openmetrics_to_blocks(path, out):
                raise HistoryError(f"promtool made no block from {path} (empty file?)")
            with lock:
                state.mark(step + ":converted")
        with lock:
            summary.blocks += move_blocks(out, plan.build_dir)
            shutil.rmtree(out, ignore_errors=True)
            state.mark(step)
            progress.finish(f"blocks from {path.name}")

    try:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="history") as pool, \
                _stopped_on_error(pool):
            futures: list[Future[None]] = [pool.submit(convert, p)
                                           for p in plan.extra_files()]
            if plan.backfill and not state.is_done("backfill"):
                progress.step("Hetzner backfill")
                _run_backfill(plan, progress)
                state.mark("backfill")
                progress.finish("Hetzner backfill written")
            if plan.backfill:
                futures.append(pool.submit(convert, plan.hetzner_file))
            for future in futures:
                future.result()
        if plan.backfill and plan.hetzner_file.exists():
            plan.hetzner_file.unlink()

        pending = [(n, i, doc) for n, pass_doc in enumerate(plan.passes, start=1)
                   for i, doc in enumerate(rulespack.one_rule_files(pass_doc))
                   if not state.is_done(rule_step(n, doc))]
        if pending:
            with _passes_prometheus(plan) as (url, reload):
                for k, n in enumerate(sorted({n for n, _, _ in pending})):
                    if k > 0:
                        progress.step(f"rule pass {n}: Prometheus loads the blocks before it")
                        reload()
                    rules = [(i, doc) for m, i, doc in pending if m == n]
                    summary.rule_blocks += _run_pass(plan, n, rules, url, state, progress,
                                                     jobs, summary)
        if plan.prometheus_url and not state.is_done("publish"):
            running = RunningPrometheus(plan.prometheus_url)
            progress.step(f"blocks into {plan.data_dir}; Prometheus loads them")
            before = running.reloads()
            move_blocks(plan.build_dir, plan.data_dir)
            running.loaded(before)
            state.mark("publish")
            progress.finish(f"the running Prometheus at {plan.prometheus_url} holds the "
                            "history")
    finally:
        progress.close()
    summary.seconds = time.monotonic() - started
    return summary


def _run_pass(plan: Plan, n: int, rules: Sequence[tuple[int, dict[str, Any]]], url: str,
              state: State, progress: Progress, jobs: int, summary: Summary) -> int:
    folder = plan.work_dir / f"pass-{n}"
    folder.mkdir(exist_ok=True)
    lock = threading.Lock()
    moved = [0]

    def one(i: int, doc: dict[str, Any]) -> None:
        record = doc["groups"][0]["rules"][0]["record"]
        rule_file = folder / f"rule-{i}.yml"
        rule_file.write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))
        progress.step(f"rule pass {n}: {record}")
        out = folder / f"rule-{i}.blocks"
        made = rules_to_blocks(rule_file, out, url, plan.start, plan.end)
        with lock:
            if not made:  # nothing it reads is there, e.g. no agent history yet
                summary.empty_rules.append(record)
            moved[0] += move_blocks(out, plan.build_dir)
            shutil.rmtree(out, ignore_errors=True)
            state.mark(rule_step(n, doc))
            progress.finish(f"rule pass {n}: {record}")

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix=f"pass-{n}") as pool, \
            _stopped_on_error(pool):
        for future in [pool.submit(one, i, doc) for i, doc in rules]:
            future.result()
    return moved[0]


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="history_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("load", allow_abbrev=False, help="load the history (see --help)",
                       description=__doc__.split("\n\n")[0],
                       epilog="Steps, resumption and the Prometheus the rule passes query: "
                              "see the module documentation (cli/src/infrascope_cli/"
                              "history.py) and exporter/docs/backfill.md.")
    p.add_argument("--config-dir", type=Path, default=None,
                   help="what `infrascope setup` wrote: exporter.yml for the backfill, "
                        "prometheus/prometheus.yml for the exporter's target, "
                        "prometheus/rules/ for the rules pack")
    p.add_argument("--exporter.config-file", dest="exporter_config", type=Path, default=None,
                   help="the exporter's configuration (default CONFIG_DIR/exporter.yml)")
    p.add_argument("--exporter.instance", dest="instance", default=None,
                   help="the exporter's target as Prometheus scrapes it, e.g. "
                        "127.0.0.1:8790: the instance label of the backfilled series (default "
                        "the target of job hetzner in CONFIG_DIR/prometheus/prometheus.yml)")
    p.add_argument("--exporter.request-budget", dest="request_budget", default=None,
                   help="share of the Hetzner request budget the backfill may use (default "
                        "the exporter configuration's)")
    p.add_argument("--no-backfill", action="store_true",
                   help="no Hetzner requests: load only the --openmetrics files")
    p.add_argument("--openmetrics", type=Path, action="append", default=[],
                   metavar="FILE_OR_DIR",
                   help="another OpenMetrics file to load (repeatable), e.g. agents' history; "
                        "a folder stands for the *.om files in it (none is fine)")
    p.add_argument("--prometheus-url", default=None,
                   help="a running Prometheus: the blocks go into its data directory and it "
                        "loads them itself (default with --config-dir and no --data-dir: the "
                        "URL the recommender reads, CONFIG_DIR/recommender.yml)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="Prometheus' --storage.tsdb.path (default: the one the running "
                        "Prometheus reports); alone, without --prometheus-url: Prometheus "
                        "is stopped and a temporary one runs on it for the rule passes")
    p.add_argument("--rules-dir", type=Path, default=None,
                   help="the rules pack (default CONFIG_DIR/prometheus/rules, else the "
                        "installed pack)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="scratch space and the resumable state (default: "
                        "DATA_DIR/../infrascope-history)")
    p.add_argument("--days", type=float, default=30.0,
                   help="days of history (Hetzner keeps 30; default 30)")
    p.add_argument("--end", default=None,
                   help="end of the history (RFC 3339 or Unix seconds; default 3 hours ago)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="promtool processes in parallel (default: the number of cores)")
    p.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto",
                   help="a bar on a terminal, plain lines otherwise (default auto)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--restart", action="store_true",
                   help="forget what an interrupted load did (default: resume it)")


def _exporter_target(prometheus_yml: Path) -> str | None:
    """The static target of job ``hetzner`` in a Prometheus configuration."""
    try:
        doc = yaml.safe_load(prometheus_yml.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    for job in doc.get("scrape_configs") or []:
        if isinstance(job, dict) and job.get("job_name") == "hetzner":
            for static in job.get("static_configs") or []:
                targets = static.get("targets") or []
                if targets:
                    return str(targets[0])
    return None


def _configured_prometheus(config_dir: Path) -> str | None:
    """The Prometheus URL the recommender of a ``setup`` configuration reads."""
    try:
        doc = yaml.safe_load((config_dir / "recommender.yml").read_text(encoding="utf-8"))
        return str(doc["prometheus"]["url"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


def _exe(name: str) -> str:
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise HistoryError(f"{name} not found: install InfraScope (scripts/install.sh)")
    return found


def build_plan(args: argparse.Namespace, now: float | None = None) -> Plan:
    now = time.time() if now is None else now
    cfg = args.config_dir
    if not args.days > 0:
        raise HistoryError("--days: must be positive")
    start, end = plan_range(now, args.days, parse_time(args.end) if args.end else None)
    rules_dir = args.rules_dir
    if rules_dir is None and cfg is not None and any((cfg / "prometheus" / "rules").glob(
            rulespack.RULES_GLOB)):
        rules_dir = cfg / "prometheus" / "rules"
    try:
        rules_dir = rulespack.find_rules_dir(rules_dir)
        passes = rulespack.split_passes(rulespack.backfill_groups(rulespack.load(rules_dir)))
    except rulespack.RulesPackError as exc:
        raise HistoryError(str(exc)) from exc
    data_dir = args.data_dir
    prometheus_url = args.prometheus_url
    if prometheus_url is None and data_dir is None and cfg is not None:
        prometheus_url = _configured_prometheus(cfg)
    if prometheus_url:
        data_dir = RunningPrometheus(prometheus_url).check(data_dir, start)
    elif data_dir is None:
        raise HistoryError("--data-dir: required without --prometheus-url (Prometheus' "
                           "--storage.tsdb.path)")
    data_dir = data_dir.resolve()  # the temporary Prometheus runs in another folder
    work_dir = (args.work_dir or data_dir.parent / "infrascope-history").resolve()
    backfill = None
    if not args.no_backfill:
        exporter_config = args.exporter_config or (cfg / "exporter.yml" if cfg else None)
        if exporter_config is None:
            raise HistoryError("the exporter's configuration is needed for the backfill: "
                               "--config-dir or --exporter.config-file (or --no-backfill)")
        instance = args.instance or (_exporter_target(cfg / "prometheus" / "prometheus.yml")
                                     if cfg else None)
        if not instance:
            raise HistoryError("the exporter's target as Prometheus scrapes it is needed (the "
                               "instance label): --exporter.instance HOST:PORT")
        backfill = [_exe("infrascope-exporter"), "backfill", "--config.file",
                    str(exporter_config), "--output", str(work_dir / "hetzner.om"),
                    "--days", f"{args.days:g}", "--end", iso(end), "--instance", instance]
        if args.request_budget is not None:
            backfill += ["--budget.share", str(args.request_budget)]
    elif not args.openmetrics:
        raise HistoryError("nothing to load: --no-backfill and no --openmetrics file")
    return Plan(data_dir=data_dir, work_dir=work_dir, rules_dir=rules_dir, start=start,
                end=end, openmetrics=[p.resolve() for p in args.openmetrics],
                backfill=backfill, prometheus_url=prometheus_url, jobs=args.jobs,
                passes=passes)


def run(args: argparse.Namespace) -> int:
    try:
        plan = build_plan(args)
        if args.dry_run:
            print(plan.describe())
            if plan.backfill:
                print("\nthe Hetzner backfill's own plan (read-only API calls):", flush=True)
                proc = subprocess.run([*plan.backfill, "--dry-run"], check=False)
                return 1 if proc.returncode else 0
            return 0
        summary = load(plan, restart=args.restart, progress_mode=args.progress)
    except (HistoryError, PromtoolError, PrometheusError, OSError) as exc:
        print(f"infrascope history load: {exc}", file=sys.stderr)
        return 1
    if summary.resumed == len(plan.steps()):
        print(f"history already loaded into {plan.data_dir} ({iso(summary.start)} .. "
              f"{iso(summary.end)}, {plan.work_dir / 'state.json'}): nothing to do "
              "(--restart loads it again)")
        return 0
    resumed = f", {summary.resumed} steps resumed" if summary.resumed else ""
    print(f"history loaded into {plan.data_dir}: {iso(summary.start)} .. {iso(summary.end)}, "
          f"{summary.blocks} blocks of series and {summary.rule_blocks} of recording rules "
          f"in {summary.seconds:.1f} s{resumed}. Prometheus computes the 30-day figures over "
          "it at the next evaluation of the infrascope-utilisation-30d groups.")
    if summary.empty_rules:
        print(f"no history for {', '.join(sorted(summary.empty_rules))}: nothing they read "
              "is in the range (memory and dedicated servers' CPU come from agents; they fill "
              "up as the agents run)")
    return 0
