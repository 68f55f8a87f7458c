"""`bench startup`: wall time of `lmprint match` on one clip, each run a fresh process (a cold start as a user
sees it: interpreter, imports, opening the index, decoding, matching, printing), and what the process imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from lmprint.errors import LmprintError

HEAVY_MODULES = ("numba", "scipy", "torch", "sqlite_utils")
"""Modules whose import a cold `lmprint match` should not pay for (numba's runtime alone took 0.7 s: docs/design.md,
"Start-up"); the report lists those it imported."""

_PROBE = ("import sys, runpy; sys.argv = ['lmprint'] + sys.argv[1:]; "
          "code = 0\ntry:\n    runpy.run_module('lmprint.cli', run_name='__main__')\n"
          "except SystemExit as stop:\n    code = stop.code or 0\n"
          f"heavy = sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)\n"
          "print('IMPORTED ' + ','.join(heavy), file=sys.stderr)\n"
          "peak = next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
          "print('PEAK_KB ' + peak, file=sys.stderr)\nsys.exit(code)")


def measure(db: str, clip: str, runs: int = 7, settings: dict | None = None) -> dict:
    """Median and spread of `lmprint --db DB match CLIP` in fresh interpreters, plus its answer; `settings`:
    matching settings that differ from the defaults, passed as `--set NAME=VALUE`."""
    times: list[float] = []
    answer: dict = {}
    imported = ""
    peaks_kb: list[int] = []
    # bytecode cached as an installed package has it: with PYTHONDONTWRITEBYTECODE set, every run would compile the
    # package's sources again, a cost no user's second run pays
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _PROBE, "--db", db, "match", "--json", *set_options(settings),
                               clip],
                              capture_output=True, text=True, env=environment)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:  # lmprint's first line (why; a count of failures follows), not the probe's
            said = [line for line in done.stderr.splitlines() if not line.startswith(("IMPORTED ", "PEAK_KB "))]
            why = next((line for line in said if line.startswith("lmprint:")), said[-1] if said else "")
            raise LmprintError(f"lmprint match failed: {why or 'exit code ' + str(done.returncode)}")
        answer = json.loads(done.stdout.splitlines()[-1])
        imported = next((line[9:] for line in done.stderr.splitlines() if line.startswith("IMPORTED ")), "")
        peaks_kb += [int(line[8:]) for line in done.stderr.splitlines() if line.startswith("PEAK_KB ")]
    return {"runs": runs, "wall_s_median": round(float(np.median(times)), 3),
            "wall_s_min": round(min(times), 3), "wall_s_max": round(max(times), 3),
            "heavy_modules_imported": imported or "none", "peak_rss_mb": round(max(peaks_kb, default=0) / 1024, 1),
            "answer": answer["match"]}


def set_options(settings: dict | None) -> list[str]:
    """`--set NAME=VALUE` for each setting, a table's fields as `NAME.FIELD=VALUE` (`lmprint match --set`)."""
    options: list[str] = []
    for name, value in (settings or {}).items():
        pairs = value.items() if isinstance(value, dict) else [(None, value)]
        options += [option for field, item in pairs
                    for option in ("--set", f"{name}.{field}={item}" if field else f"{name}={item}")]
    return options
