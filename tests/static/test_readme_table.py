"""README's "What is here" table names every piece the collection ships, derived from the tree.

A new role (roles/*), module (plugins/modules/*.py), action (plugins/action/*.py), callback
(plugins/callback/*.py), filter (every name a plugins/filter/*.py FilterModule.filters()
exports) or playbook (playbooks/*.yml) fails this test until the table has a row for it, so
the first docs a user reads stay current.

Row rules (first cell = the piece, the rest = what it does):
- role X: a first cell with `X` and the word "role";
- module or action X: a first cell with `inferops.gpu.X` and "module" / "action" (a module file
  that only documents an action of the same name is covered by the action's row);
- callback X: a first cell with `X` or `inferops.gpu.X` and "callback";
- playbook X.yml: `X.yml` in the row whose first cell says "playbooks";
- filter X: in the row whose first cell says "filters", a backticked name equal to X or a
  `prefix_*` pattern that matches it.
"""

import ast
import fnmatch
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _what_is_here_rows():
    text = (REPO / "README.md").read_text()
    match = re.search(r"^## What is here\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, 'README.md has no "## What is here" section'
    rows = []
    for line in match.group(1).splitlines():
        if not line.startswith("|") or re.match(r"^\|[-| ]+\|$", line):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows.append((cells[0], " | ".join(cells[1:])))
    assert rows, 'README.md\'s "What is here" section has no table'
    return rows[1:]  # the header row names the columns


def _ticked(text):
    return set(re.findall(r"`([^`]+)`", text))


def _filter_names():
    names = {}
    for path in sorted((REPO / "plugins" / "filter").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "filters":
                for ret in ast.walk(node):
                    if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Dict):
                        for key in ret.value.keys:
                            names[key.value] = path.name
    return names


def _stems(folder, suffix):
    return sorted(p.stem for p in (REPO / folder).glob(f"*{suffix}") if not p.name.startswith("_"))


def _pieces():
    actions = _stems("plugins/action", ".py")
    pieces = [("role", name) for name in sorted(p.name for p in (REPO / "roles").iterdir() if p.is_dir())]
    pieces += [("module", name) for name in _stems("plugins/modules", ".py") if name not in actions]
    pieces += [("action", name) for name in actions]
    pieces += [("callback", name) for name in _stems("plugins/callback", ".py")]
    pieces += [("filter", name) for name in sorted(_filter_names())]
    pieces += [("playbook", name) for name in _stems("playbooks", ".yml")]
    return pieces


def _listed(kind, name, rows):
    for first, rest in rows:
        ticked = _ticked(first)
        if kind == "role" and name in ticked and "role" in first:
            return True
        if kind in ("module", "action") and f"inferops.gpu.{name}" in ticked and kind in first:
            return True
        if kind == "callback" and ticked & {name, f"inferops.gpu.{name}"} and "callback" in first:
            return True
        if kind == "playbook" and first.startswith("playbooks") and f"{name}.yml" in _ticked(rest):
            return True
        if kind == "filter" and first.startswith("filters"):
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in _ticked(rest)):
                return True
    return False


def test_the_tree_has_pieces_of_every_kind():
    # Guards the discovery itself: an empty list would make the table test pass vacuously.
    kinds = {piece[0] for piece in _pieces()}
    assert kinds == {"role", "module", "action", "callback", "filter", "playbook"}, kinds
    assert len(_filter_names()) >= 20


@pytest.mark.parametrize("kind,name", _pieces(), ids=lambda value: value)
def test_readme_what_is_here_lists(kind, name):
    assert _listed(kind, name, _what_is_here_rows()), (
        f'README.md "What is here" has no row for {kind} {name}: add one (see this test\'s docstring '
        "for what a row must say)")
