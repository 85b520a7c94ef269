"""`python -m adapter4rec TOOL`: the one door to the command-line tools lists them, refuses an unknown one with
exit 2 and hands the rest of the command line to the tool's own parser."""
import subprocess
import sys

from adapter4rec.__main__ import TOOLS


def tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "adapter4rec", *args],
                          capture_output=True, text=True, timeout=120)


def test_help_lists_every_tool():
    done = tool("--help")
    assert done.returncode == 0
    assert all(f"  {name} " in done.stdout for name in TOOLS)


def test_unknown_tool_is_refused_with_the_list():
    done = tool("recomend")
    assert done.returncode == 2
    assert "unknown tool 'recomend'" in done.stderr and "recommend" in done.stderr


def test_the_tool_parses_its_own_options():
    done = tool("recommend", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m adapter4rec recommend") and "--unknown_items" in done.stdout
    done = tool("export", "--no-such-option", "runs/x")
    assert done.returncode == 2 and "--no-such-option" in done.stderr
