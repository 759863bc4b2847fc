"""Which modules pytest rewrites the asserts of: each plugin's entry-point module, not its whole distribution.

For every distribution with a ``pytest11`` entry point pytest marks all its top-level packages for assertion
rewriting: for this one ``harness`` and ``system``; for the plugins installed beside it ``hypothesis``,
``schemathesis``, ``locust``, ``xdist``, ``pytest_benchmark`` and more (whether loaded or ``-p no:``-ed). Every
pytest process, each xdist worker too, then parses, rewrites and compiles those modules again at import wherever
bytecode is not written (``PYTHONDONTWRITEBYTECODE``: this kind of machine sets it), hundreds of modules whose asserts
are internal invariants, not test verdicts; and the system under test should run its own code as written. Imported by
this plugin before anything else of ``harness``, this narrows each distribution's mark to the modules its entry points
name (a plugin's own hooks and fixtures keep pytest's assertion messages). Test modules and conftest files are
rewritten as always. A rewritten assert and a plain one fail alike; only the message differs.
"""

from __future__ import annotations

import importlib.metadata
import sys


def plugin_distributions() -> tuple[set[str], set[str]]:
    """What pytest marked for the installed plugin distributions (their top-level modules and packages, as it reads
    them from each distribution's file list), and the modules their ``pytest11`` entry points name."""
    tops: set[str] = set()
    entries: set[str] = set()
    for dist in importlib.metadata.distributions():
        points = [ep for ep in dist.entry_points if ep.group == "pytest11"]
        if not points:
            continue
        entries |= {ep.value.partition(":")[0].strip() for ep in points}
        for path in dist.files or []:
            parts = path.parts
            if len(parts) == 1 and parts[0].endswith(".py"):
                tops.add(parts[0][:-3])
            elif len(parts) > 1 and parts[-1] == "__init__.py" and "." not in parts[0]:
                tops.add(parts[0])
    return tops, entries


def narrow() -> None:
    """In pytest's rewriting import hook (on ``sys.meta_path`` while pytest runs), the plugin distributions' marks
    replaced by their entry-point modules; what else is marked (``-p`` modules, ``register_assert_rewrite``) stays.
    Nothing where pytest does not rewrite (``--assert=plain``)."""
    for finder in sys.meta_path:
        marked = getattr(finder, "_must_rewrite", None)
        if isinstance(marked, set):
            tops, entries = plugin_distributions()
            # an editable install that lists no files is marked by its entry points' outermost packages instead
            marked -= (tops | {e.split(".")[0] for e in entries}) - entries
            marked |= entries


narrow()
