"""Which modules pytest rewrites the asserts of: a plugin distribution's entry-point modules, not its whole packages.

For every distribution with a ``pytest11`` entry point pytest marks all its top-level packages for assertion
rewriting: for this one ``harness`` and ``system``; for the plugins installed beside it ``hypothesis``,
``schemathesis``, ``xdist``, ``pytest_benchmark`` and more (whether loaded or ``-p no:``-ed). Every pytest process,
each xdist worker too, then parses, rewrites and compiles those modules again at import wherever bytecode is not
written (``PYTHONDONTWRITEBYTECODE``: this kind of machine sets it): hundreds of modules whose asserts are internal
invariants, not test verdicts.

* Verisim's own distribution is always narrowed to its plugin (``harness.pytest_plugin``): imported by the plugin
  before anything else of ``harness``, so the harness's library and the system under test run as written, in any
  project that installs Verisim.
* The other plugin distributions are narrowed to their entry-point modules only where a project asks for it, with the
  ini option ``verisim_rewrite_plugin_entry_points = true`` (Verisim's own ``pyproject.toml`` does): a project whose
  own plugin package relies on rewritten asserts in its helper modules keeps them unless it opts in.

Test modules and conftest files are rewritten as always, and so is what ``-p`` or ``register_assert_rewrite`` marks. A
rewritten assert and a plain one fail alike; only the message differs.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys

OWN = {"harness", "system"}  # this distribution's top-level packages
INI = "verisim_rewrite_plugin_entry_points"


@functools.cache
def plugin_distributions() -> tuple[frozenset[str], frozenset[str]]:
    """What pytest marked for the installed plugin distributions (their top-level modules and packages, as it reads
    them from each distribution's file list), and the modules their ``pytest11`` entry points name. Read once: the
    plugin's import and the ini option's hook both narrow."""
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
    return frozenset(tops), frozenset(entries)


def narrow(within: set[str] | None = None) -> None:
    """In pytest's rewriting import hook (on ``sys.meta_path`` while pytest runs), plugin distributions' marks replaced
    by their entry-point modules: those under the top-level names ``within``, or every plugin distribution's (None).
    Other marks stay. Nothing where pytest does not rewrite (``--assert=plain``)."""
    for finder in sys.meta_path:
        marked = getattr(finder, "_must_rewrite", None)
        if not isinstance(marked, set):
            continue
        tops, entries = plugin_distributions()
        # an editable install that lists no files is marked by its entry points' outermost packages instead
        tops = tops | {e.split(".")[0] for e in entries}
        if within is not None:
            tops &= within
            entries = frozenset(e for e in entries if e.split(".")[0] in within)
        marked -= tops - entries
        marked |= entries


narrow(OWN)
