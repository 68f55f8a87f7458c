"""The allocator setting: memory a query frees is reused, not faulted in again from the kernel."""

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="sets glibc's malloc")

BURSTS = """
import resource, sys
import numpy as np
{setup}
def burst():
    arrays = [np.ones(1 << 17) for _ in range(40)]  # 40 MB of 1 MB arrays alive at once, as in a query, then freed
    del arrays
burst()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    burst()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

PAGES_PER_BURST = (40 << 20) // 4096


def page_faults(setup: str, extra_env: dict | None = None) -> int:
    env = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    env.update(extra_env or {})
    result = subprocess.run([sys.executable, "-c", BURSTS.format(setup=setup)], capture_output=True, text=True,
                            env=env, check=True)
    return int(result.stdout.split()[-1])


@pytest.fixture(scope="module")
def faulting_host():
    """glibc's default hands the bursts back to the kernel each time, and each comes back page by page (a host
    whose transparent huge pages are always on faults them in 2 MB at a time: nothing to compare there)."""
    if page_faults("") < 4 * PAGES_PER_BURST:
        pytest.skip("this host faults freed memory in without many page faults")


def test_freed_memory_is_reused_and_workers_inherit_the_setting(faulting_host):
    assert page_faults("from lmprint.allocator import keep_freed_memory\nassert keep_freed_memory()") < 100
    # worker processes: the setting is in the environment a child starts with
    set_and_spawn = ("import os, subprocess, sys\nfrom lmprint.allocator import keep_freed_memory\nkeep_freed_memory()\n"
                     f"print(subprocess.run([sys.executable, '-c', {BURSTS.format(setup='')!r}], capture_output=True, "
                     "text=True, check=True).stdout)\nsys.exit()")
    assert page_faults(set_and_spawn) < 100
    assert page_faults("", {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "536870912"}) < 100


def test_the_cli_runs_with_it(faulting_host, tmp_path):
    run_cli = (f"from lmprint.cli import main\ntry: main(['--db', {str(tmp_path / 'index.db')!r}, 'list'])\n"
               "except SystemExit: pass")  # no index there: the command fails, after the group has run
    assert page_faults(run_cli) < 100


def test_a_users_own_setting_wins(faulting_host):
    setup = "from lmprint.allocator import keep_freed_memory\nassert not keep_freed_memory()"
    assert page_faults(setup, {"MALLOC_TRIM_THRESHOLD_": "1"}) > 4 * PAGES_PER_BURST
    assert page_faults(setup, {"MALLOC_MMAP_THRESHOLD_": "131072"}) > 4 * PAGES_PER_BURST  # either setting alone
    assert page_faults(setup, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}) > 4 * PAGES_PER_BURST
