"""The suite's vocabulary of the system (``harness.oracles.contract``) agrees with the system's own, and the layers keep to
their direction: ``system/`` never imports ``harness/`` or ``tests/``; ``harness/`` never imports ``tests/``."""

from __future__ import annotations

import ast
import re
import uuid
from pathlib import Path

import pytest

from harness.oracles import contract

ROOT = Path(__file__).resolve().parents[2]


def test_statuses_and_their_order_match_the_system():
    from system.jobs import lifecycle
    from system.storage import status_cache

    assert tuple(lifecycle.TERMINAL) == contract.TERMINAL
    lua = dict(re.findall(r"(\w+)=(\d)", re.search(r"local ranks = \{(.*?)\}", status_cache._PUT_FORWARD).group(1)))
    assert {k: int(v) for k, v in lua.items()} == contract.RANK


def test_the_lifecycle_is_declared_once_and_the_database_agrees():
    """``system.jobs.lifecycle`` is the system's one declaration: the suite's own vocabulary matches it, the SQL
    constraint admits exactly its statuses, the status cache's Lua is generated from its ranks."""
    from system.jobs import lifecycle
    from system.storage import status_cache

    assert {s.value: s.rank for s in lifecycle.Status} == contract.RANK
    assert lifecycle.TERMINAL == contract.TERMINAL
    # the constraint as the last migration that sets it leaves it
    sql = "\n".join(p.read_text() for p in sorted((ROOT / "system" / "storage" / "migrations").glob("*.sql")))
    listed = re.findall(r"CHECK \(status IN \(([^)]*)\)\)", sql)[-1]
    assert tuple(re.findall(r"'(\w+)'", listed)) == lifecycle.ALL
    assert lifecycle.lua_ranks() in status_cache._PUT_FORWARD


def test_keys_topics_and_message_match_the_system():
    from system.config import Settings
    from system.jobs import shapes
    from system.storage import status_cache

    job = uuid.uuid4()
    assert status_cache.status_key(job) == contract.status_key(job)
    s = Settings(_env_file=None)
    assert {"inference": s.kafka_topic_inference, "score": s.kafka_topic_scores} == contract.RESULT_TOPICS
    assert s.kafka_topic_job_events == contract.EVENTS_TOPIC
    import json

    assert json.loads(contract.job_message(job, "inference")) == shapes.job_message({"id": job, "kind": "inference"})


# -- the import contract ----------------------------------------------------------------------------------------------
def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def violations(root: Path, package: str, banned: tuple[str, ...]) -> list[str]:
    """``file: module`` for every import in ``root/package`` of a module under one of ``banned``."""
    out = []
    for path in sorted((root / package).rglob("*.py")):
        for mod in sorted(imports_of(path)):
            if mod.split(".")[0] in banned:
                out.append(f"{path.relative_to(root)}: {mod}")
    return out


@pytest.mark.parametrize(
    ("package", "banned"),
    [
        ("system", ("harness", "tests")),
        ("harness", ("tests",)),
        ("harness/oracles", ("system", "tests")),  # the oracle never takes the system's word for anything
    ],
)
def test_the_layers_import_only_downwards(package, banned):
    assert violations(ROOT, package, banned) == []


def test_the_import_check_sees_a_planted_import(tmp_path):
    (tmp_path / "system" / "worker").mkdir(parents=True)
    (tmp_path / "system" / "worker" / "x.py").write_text("def f():\n    from harness.oracles.ledger import judge\n")
    assert violations(tmp_path, "system", ("harness", "tests")) == ["system/worker/x.py: harness.oracles.ledger"]


def import_cycles(root: Path, package: str) -> list[list[str]]:
    """The import circles among ``package``'s modules (every import statement, at the top or inside a function)."""
    mods = {}
    for path in (root / package).rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                graph[mod] |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    target = f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                    if target in mods:
                        graph[mod].add(target)
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_harness_has_no_import_circle():
    assert import_cycles(ROOT, "harness") == []


def test_the_circle_check_sees_a_planted_circle(tmp_path):
    (tmp_path / "harness" / "stack").mkdir(parents=True)
    (tmp_path / "harness" / "__init__.py").write_text("")
    (tmp_path / "harness" / "stack" / "__init__.py").write_text("")
    (tmp_path / "harness" / "stack" / "provider.py").write_text("def pick():\n    from harness.stack import local\n")
    (tmp_path / "harness" / "stack" / "local.py").write_text("from harness.stack.provider import pick\n")
    (tmp_path / "harness" / "docker.py").write_text("from harness.stack import provider\n")
    assert import_cycles(tmp_path, "harness") == [["harness.stack.local", "harness.stack.provider"]]


# -- the repository stands on its own -------------------------------------------------------------------------------
CITED_DOC = re.compile(r"docs/([\w.-]+\.md)")
OUTSIDE = re.compile(r"(?:\.\./)?shared/(?:research|seeds)/[\w./-]*|research/[\w-]+\.md")


def citations(root: Path) -> tuple[list[str], list[str]]:
    """(docs pages cited that do not exist, places that cite notes outside the repository) over the code and docs."""
    missing, outside = [], []
    files = [
        p for d in ("system", "harness", "tests", "docs") for p in (root / d).rglob("*") if p.suffix in {".py", ".md"}
    ]
    files += [root / n for n in ("README.md", "pyproject.toml", "noxfile.py", "dev.py") if (root / n).exists()]
    for path in sorted(files):
        if path == Path(__file__):
            continue
        text = path.read_text(errors="replace")
        where = path.relative_to(root)
        missing += [f"{where}: docs/{m}" for m in CITED_DOC.findall(text) if not (root / "docs" / m).exists()]
        outside += [f"{where}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
    return missing, outside


def test_the_code_cites_only_docs_inside_the_repository():
    assert citations(ROOT) == ([], [])


def test_the_citation_check_sees_a_dangling_or_outside_citation(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "real.md").write_text("x")
    (tmp_path / "harness").mkdir()
    (tmp_path / "harness" / "a.py").write_text('"""see docs/real.md, docs/gone.md and ../shared/research/music.md"""\n')
    assert citations(tmp_path) == (["harness/a.py: docs/gone.md"], ["harness/a.py: ../shared/research/music.md"])


# -- what judges time is marked so ------------------------------------------------------------------------------------
# CI runs the fault tests several at a time (pytest-xdist) and those marked ``timing`` alone: a test in a module that
# gates on time (an SLO of harness.oracles.slo, or the load harness.programs.load / harness.programs.chaos_load make) must carry that marker, or
# its verdict would measure its neighbour, unless it carries ``red_verdicts`` (it asserts only that a planted defect
# turns verdicts red, which a busy neighbour cannot undo). Unit tests of the gates judge synthetic figures: exempt.
JUDGES_TIME = {"harness.oracles.slo", "harness.programs.load", "harness.programs.chaos_load"}
TIME_MARKS = ("mark.timing", "mark.red_verdicts")


def unmarked_timing(root: Path) -> list[str]:
    out = []
    for path in sorted((root / "tests").rglob("test_*.py")):
        if path.relative_to(root / "tests").parts[0] == "unit":
            continue
        tree = ast.parse(path.read_text(), str(path))
        used = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                used |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                used |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        if not used & JUDGES_TIME:
            continue
        module_marks = " ".join(
            ast.unparse(n.value)
            for n in tree.body
            if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)
        )
        if "mark.timing" in module_marks:
            continue
        for fn in tree.body:
            if isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_"):
                marks = " ".join(ast.unparse(d) for d in fn.decorator_list)
                if not any(m in marks for m in TIME_MARKS):
                    out.append(f"{path.relative_to(root)}::{fn.name}: uses {', '.join(sorted(used & JUDGES_TIME))}")
    return out


def test_every_test_that_judges_time_is_marked_timing():
    assert unmarked_timing(ROOT) == []


def test_the_timing_check_sees_an_unmarked_gate(tmp_path):
    (tmp_path / "tests" / "load").mkdir(parents=True)
    (tmp_path / "tests" / "unit").mkdir()
    gate = "from harness.oracles import slo\n\ndef test_p95():\n    slo.load()\n"
    (tmp_path / "tests" / "load" / "test_gate.py").write_text(gate)
    (tmp_path / "tests" / "unit" / "test_gate_maths.py").write_text(gate)  # exempt: synthetic figures
    (tmp_path / "tests" / "load" / "test_marked.py").write_text(
        "import pytest\n" + gate + "pytestmark = pytest.mark.timing\n"
    )
    # one test of a module marked, one not: the unmarked one is named; red_verdicts counts as marked
    (tmp_path / "tests" / "load" / "test_mixed.py").write_text(
        "import pytest\nfrom harness.programs import load\n\n@pytest.mark.timing\ndef test_a():\n    pass\n\n"
        "@pytest.mark.red_verdicts\ndef test_b():\n    pass\n\ndef test_c():\n    pass\n"
    )
    assert unmarked_timing(tmp_path) == [
        "tests/load/test_gate.py::test_p95: uses harness.oracles.slo",
        "tests/load/test_mixed.py::test_c: uses harness.programs.load",
    ]


def test_the_tour_names_files_that_exist():
    """docs/tour.md walks a newcomer through the code by path: every file or folder it names is there."""
    text = (ROOT / "docs" / "tour.md").read_text()
    named = set(re.findall(r"`((?:system|harness|tests|scenarios|deploy|docs)/[\w./-]*)`", text))
    named |= {f"system/pipelines/{n}" for n in re.findall(r"`(score_\w+\.py)`", text)}
    assert len(named) > 30
    assert sorted(p for p in named if not (ROOT / p.split(" ")[0]).exists()) == []


def test_the_readmes_name_files_that_exist():
    """Every source file README.md, scenarios/README.md and docs/ name by path is there (a move leaves none stale)."""
    texts = [ROOT / "README.md", ROOT / "scenarios" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {
        (t.relative_to(ROOT), p)
        for t in texts
        for p in re.findall(r"\b((?:harness|system|tests)/[\w/.-]*\.(?:py|sql|toml))", t.read_text())
    }
    assert len(named) > 20
    assert sorted(f"{t}: {p}" for t, p in named if not (ROOT / p).exists()) == []
