"""The layers of ARCHITECTURE.md, checked on the code's own imports (lazy imports inside functions included):
no package imports a layer above its own, `slack` and `jobs` never import each other, `storage` knows nothing
of `bot`, services reach Slack only through their port (never slack_sdk or `bot.slack_api`), packages form
no cycle, and no folder or module outgrows its room. Around the product: the benchmarks
(`bench/`) and the testbed they share with the tests (`testbed/`) import the product, never the tests, and
the product imports none of them."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYERS = [
    ("foundation", {"bot.config", "bot.errors", "bot.schema", "bot.failures", "bot.text", "bot.logs", "bot.scratch",
                    "bot.pools", "bot.metrics"}),
    ("computation", {"bot.speech", "bot.transcription", "bot.summary"}),
    ("adapters", {"bot.slack_api", "bot.engines", "bot.engine_server", "storage"}),
    ("services", {"bot.services"}),
    ("front ends", {"bot.slack", "bot.jobs"}),
    ("composition root", {"bot.runtime", "bot.keys"}),
    ("entry points", {"bot.commands", "bot.__main__", "bot"}),
]
RANK = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}
MAX_MODULES_PER_FOLDER = 12
MAX_MODULE_LINES = 420  # "about 400"


def unit_of(module: str) -> str:
    """The package a module belongs to (`bot.speech.audio` → `bot.speech`; top-level `bot.x` modules alone)."""
    parts = module.split(".")
    if parts[0] == "storage":
        return "storage"
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def sources() -> list[Path]:
    return sorted(p for d in ("bot", "storage") for p in (ROOT / d).rglob("*.py") if "migrations" not in p.parts)


def imported(path: Path) -> list[tuple[str, int]]:
    """(module named, line) for every absolute import in a file, `from a import b` naming both `a` and `a.b`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(t, node.lineno) for t in [node.module] + [f"{node.module}.{a.name}" for a in node.names]]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
    return found


def imports() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) → where, for every import of our own code."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sources():
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for target, line in imported(path):
            if target.split(".")[0] in ("bot", "storage") and unit_of(target) in RANK:
                src, dst = unit_of(module), unit_of(target)
                if src != dst:
                    found[(src, dst)].append(f"{path.relative_to(ROOT)}:{line}")
    return found


# Our top-level packages outside the product, and which of ours each may import.
AROUND = {"testbed": {"bot", "storage"}, "bench": {"bot", "storage", "testbed"}}
OURS = {"bot", "storage", "tests", *AROUND}


def imports_across(roots: list[str]) -> dict[str, set[str]]:
    """Where each of our top-level packages is imported from files under `roots` (other than itself)."""
    found: dict[str, set[str]] = defaultdict(set)
    for root in roots:
        for path in (ROOT / root).rglob("*.py"):
            for target, line in imported(path):
                top = target.split(".")[0]
                if top in OURS and top != root:
                    found[top].add(f"{path.relative_to(ROOT)}:{line}")
    return found


def test_every_module_has_a_layer():
    units = {unit_of(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
             for p in sources()}
    assert units - set(RANK) == set(), "add the new package to a layer here and in ARCHITECTURE.md"


def test_no_import_runs_up_a_layer():
    upward = {f"{a} → {b}": where for (a, b), where in imports().items() if RANK[b] > RANK[a]}
    assert upward == {}


def test_slack_and_jobs_do_not_import_each_other_and_storage_knows_no_bot():
    edges = imports()
    for pair in (("bot.slack", "bot.jobs"), ("bot.jobs", "bot.slack")):
        assert pair not in edges, edges[pair]
    assert not [(a, b) for a, b in edges if a == "storage" and b != "storage"]


def test_services_talk_to_slack_only_through_their_port():
    """`bot/services/` is Slack-free: Slack is the `SlackPort` they are given (`bot.services.context`), which
    `bot/slack_api/` implements; no module of theirs imports slack_sdk, bolt or `bot.slack_api`."""
    slack = {"slack_sdk", "slack_bolt"}
    found = sorted({f"{path.relative_to(ROOT)}:{line} {target}" for path in (ROOT / "bot" / "services").rglob("*.py")
                    for target, line in imported(path)
                    if target.split(".")[0] in slack or unit_of(target) == "bot.slack_api"})
    assert found == []


def test_the_product_imports_no_test_benchmark_or_harness():
    around = imports_across(["bot", "storage"])
    assert {top: where for top, where in around.items() if top not in ("bot", "storage")} == {}


def test_benchmarks_and_harness_import_the_product_never_the_tests():
    for package, allowed in AROUND.items():
        found = imports_across([package])
        assert {top: where for top, where in found.items() if top not in allowed} == {}, package


def test_packages_form_no_cycle():
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in imports():
        graph[a].add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    assert [u for u in list(graph) if reaches(u, u, {u})] == []


def test_rooms_stay_small():
    folders: dict[Path, int] = defaultdict(int)
    long = []
    for path in sources():
        if path.name != "__init__.py":
            folders[path.parent] += 1
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert long == []
    assert {str(f.relative_to(ROOT)): n for f, n in folders.items() if n > MAX_MODULES_PER_FOLDER} == {}


def test_the_checks_see_a_violation():
    """The checker itself: a known upward pair is ranked upward, so a real one would be reported."""
    assert RANK["bot.slack_api"] < RANK["bot.services"] < RANK["bot.slack"] < RANK["bot.runtime"]
    assert unit_of("bot.speech.audio") == "bot.speech" and unit_of("storage.migrate") == "storage"
    assert ("bot.jobs", "bot.services") in imports() and ("bot.runtime", "bot.jobs") in imports()
    assert "testbed" in imports_across(["bench"]) and "bench" in imports_across(["tests"])
