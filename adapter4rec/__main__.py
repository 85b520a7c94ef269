"""`python -m adapter4rec TOOL [options]`: one door to the command-line tools (each also runs as its own module).
Training runs go through Pretraining/*/run.py, Downstream/*/run.py and the launchers (docs/running.md)."""
import runpy
import sys

TOOLS = {  # tool -> (module, what it does)
    "recommend": ("adapter4rec.serving.recommend", "top-K items for users of a finished run (TSV or JSON lines)"),
    "export": ("adapter4rec.serving.export", "a finished run as one checkpoint file (torch or safetensors)"),
    "report": ("adapter4rec.experiments.report", "tables (and figures) from finished runs"),
    "demo": ("adapter4rec.experiments.demo", "the default pretrain -> transfer job end to end (make demo)"),
}


def usage() -> str:
    rows = "\n".join(f"  {name:<10} {what}" for name, (_, what) in TOOLS.items())
    return f"usage: python -m adapter4rec TOOL [options]   (TOOL --help for its options)\n\ntools:\n{rows}"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0
    if argv[0] not in TOOLS:
        print(f"adapter4rec: unknown tool {argv[0]!r}\n{usage()}", file=sys.stderr)
        return 2
    module = TOOLS[argv[0]][0]
    sys.argv = [sys.argv[0], *argv[1:]]  # the tool parses its own options; run_module sets argv[0]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
