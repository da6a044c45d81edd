"""The layering, read from the code: every `import` of every module under botkit/ (module level or inside a
function) is an arrow, and no arrow may run upward or close a cycle.

    domain, clock, config, log, margin   (the base: nothing of botkit's above them)
    guards                                (no venue, runtime or sim)
    venue, sim, fleet                     (venues know no runtime; the sim knows no venue; the fleet is Redis)
    data                                  (history files; beside the base)
    runtime                               (above all of those)
    backtest, operate                     (the runtime on history; alerts, metrics, status page of a running bot)
    cli, report, preflight                (the top)
"""

import ast
from pathlib import Path

from tests.support import ROOT

PACKAGE = ROOT / "botkit"
FORBIDDEN = {  # importer prefix -> botkit modules it must not import
    "botkit.domain": ("botkit.",),
    "botkit.clock": ("botkit.",),
    "botkit.margin": ("botkit.clock", "botkit.config", "botkit.guards", "botkit.venue", "botkit.sim", "botkit.runtime"),
    "botkit.config": ("botkit.guards", "botkit.venue", "botkit.sim", "botkit.runtime", "botkit.margin"),
    "botkit.log": ("botkit.guards", "botkit.venue", "botkit.sim", "botkit.runtime"),
    "botkit.guards": ("botkit.venue", "botkit.runtime", "botkit.sim", "botkit.cli", "botkit.report"),
    "botkit.venue": ("botkit.runtime", "botkit.cli", "botkit.report"),
    "botkit.sim": ("botkit.venue", "botkit.runtime", "botkit.guards", "botkit.cli"),
    "botkit.runtime": ("botkit.cli", "botkit.report", "botkit.preflight", "botkit.backtest", "botkit.data",
                       "botkit.operate"),
    "botkit.fleet": ("botkit.venue", "botkit.runtime", "botkit.sim", "botkit.cli", "botkit.report", "botkit.operate",
                     "botkit.backtest"),
    "botkit.data": ("botkit.guards", "botkit.venue", "botkit.sim", "botkit.runtime", "botkit.backtest", "botkit.cli"),
    "botkit.backtest": ("botkit.cli", "botkit.report", "botkit.preflight"),
    "botkit.operate": ("botkit.cli", "botkit.report", "botkit.preflight", "botkit.backtest", "botkit.sim"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """botkit module -> the botkit modules it imports."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("botkit")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("botkit"):
                for alias in node.names:  # `from botkit.sim import engine` imports the module botkit.sim.engine
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() else node.module)
        graph[name] = found - {name}
    return graph


def test_no_import_runs_against_the_layering():
    wrong = [
        f"{importer} imports {target}"
        for importer, targets in imports().items()
        for prefix, banned in FORBIDDEN.items()
        if importer == prefix or importer.startswith(prefix + ".")
        for target in targets
        if target.startswith(banned)
    ]
    assert wrong == []


def test_no_import_cycles():
    graph = imports()
    cycles = []

    def visit(node: str, path: list[str], done: set[str]) -> None:
        for target in sorted(graph.get(node, ())):
            if target in path:
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in done:
                visit(target, [*path, target], done)
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start], done)
    assert cycles == []


def test_the_checks_see_a_violation():
    """The AST walk finds imports inside functions too (the old venue imported the emulator that way)."""
    source = "def f():\n    from botkit.sim.server import point_ccxt_at\n"
    tree = ast.parse(source)
    assert any(isinstance(n, ast.ImportFrom) and n.module == "botkit.sim.server" for n in ast.walk(tree))
