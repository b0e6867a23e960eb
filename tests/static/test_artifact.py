"""The built tarball, installed alone into an empty collections path, documents itself: `ansible-doc`
renders every module, filter and callback and every role entry point from the installed copy, with the
working directory outside the checkout and no checkout path in the environment (tests/harness/artifact.py).

What is rendered is listed from the installed files (plugins/modules/*.py, each FilterModule's filters(),
plugins/callback/*.py, roles/*/meta/argument_specs.yml), never from a hard-coded list, and compared with
the checkout, so a plugin that build_ignore leaves out, or a filter without its documentation file,
fails here.
"""

from __future__ import annotations

import ast
import re
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

from artifact import REPO, VENV_BIN, clean_env, install  # noqa: E402

NS = "inferops.gpu"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(collections path, installed collection dir, cwd outside the checkout)."""
    base = tmp_path_factory.mktemp("artifact")
    collection = install(base / "collections")
    work = base / "work"
    work.mkdir()
    return base / "collections", collection, work


def ansible_doc(installed, *args: str) -> subprocess.CompletedProcess:
    collections, work = installed[0], installed[2]
    return subprocess.run([str(VENV_BIN / "ansible-doc"), *args], cwd=work, env=clean_env(collections),
                          capture_output=True, text=True, check=False, timeout=300)


def py_plugins(root: Path, kind: str) -> list[str]:
    return sorted(p.stem for p in (root / "plugins" / kind).glob("*.py") if p.stem != "__init__")


def filter_names(root: Path) -> list[str]:
    """Every filter a FilterModule in plugins/filter/*.py returns from filters() (read, not imported)."""
    names = []
    for path in sorted((root / "plugins" / "filter").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "filters":
                for ret in (n for n in ast.walk(node) if isinstance(n, ast.Return)):
                    assert isinstance(ret.value, ast.Dict), f"{path}: filters() must return a dict literal"
                    names += [key.value for key in ret.value.keys]
    return sorted(names)


def role_entry_points(root: Path) -> dict[str, list[str]]:
    found = {}
    for spec in sorted((root / "roles").glob("*/meta/argument_specs.yml")):
        found[spec.parent.parent.name] = sorted(yaml.safe_load(spec.read_text())["argument_specs"])
    return found


def test_installed_copy_has_what_the_checkout_has(installed):
    """Nothing the checkout's plugins or roles hold is missing from the tarball (build_ignore), and the
    lists the rendering test iterates are not empty."""
    collection = installed[1]
    for kind in ("modules", "callback", "action", "module_utils"):
        assert py_plugins(collection, kind) == py_plugins(REPO, kind), kind
        assert py_plugins(collection, kind), f"no {kind} found in the installed copy"
    assert filter_names(collection) == filter_names(REPO)
    assert len(filter_names(collection)) >= 10
    assert role_entry_points(collection) == role_entry_points(REPO)
    assert sorted(p.name for p in (REPO / "roles").iterdir() if p.is_dir()) == sorted(role_entry_points(collection))
    shipped_playbooks = sorted(p.name for p in (collection / "playbooks").glob("*.yml"))
    assert shipped_playbooks == sorted(p.name for p in (REPO / "playbooks").glob("*.yml"))
    assert {"site.yml", "drift.yml", "health.yml"} <= set(shipped_playbooks)


def test_every_filter_has_its_documentation_file(installed):
    """ansible-doc finds a filter's documentation in plugins/filter/<name>.yml; without it the filter
    works but `ansible-doc -t filter` cannot render it."""
    collection = installed[1]
    undocumented = [name for name in filter_names(collection)
                    if not (collection / "plugins" / "filter" / f"{name}.yml").is_file()]
    assert not undocumented, f"filters without plugins/filter/<name>.yml: {undocumented}"


def test_ansible_doc_lists_every_plugin(installed):
    collection = installed[1]
    for kind, expected in (("module", py_plugins(collection, "modules")),
                           ("callback", py_plugins(collection, "callback")),
                           ("filter", filter_names(collection))):
        run = ansible_doc(installed, "-t", kind, "--list", "--json", NS)
        assert run.returncode == 0, run.stderr
        listed = sorted(name.removeprefix(NS + ".") for name in json.loads(run.stdout))
        assert listed == expected, (kind, run.stderr)


@pytest.mark.parametrize("kind, folder", [("module", "modules"), ("callback", "callback"), ("filter", None)])
def test_ansible_doc_renders_every_plugin(installed, kind, folder):
    collection = installed[1]
    names = py_plugins(collection, folder) if folder else filter_names(collection)
    fqcns = [f"{NS}.{name}" for name in names]
    run = ansible_doc(installed, "-t", kind, "--json", *fqcns)
    assert run.returncode == 0, run.stderr
    docs = json.loads(run.stdout)
    assert sorted(docs) == sorted(fqcns), run.stderr
    for fqcn, entry in docs.items():
        doc = entry["doc"]
        assert doc.get("short_description"), f"{fqcn}: no short_description"
        assert str(doc.get("filename", "")).startswith(str(collection)), f"{fqcn} rendered from {doc.get('filename')}"
        if kind in ("module", "filter"):
            assert entry.get("examples"), f"{fqcn}: no EXAMPLES"
            assert entry.get("return"), f"{fqcn}: no RETURN"
    # The text rendering users read, too (it fails on documentation the JSON dump tolerates).
    text = ansible_doc(installed, "-t", kind, *fqcns)
    assert text.returncode == 0, text.stderr
    for fqcn in fqcns:
        assert fqcn in text.stdout


def test_action_plugins_are_documented_by_their_module(installed):
    """An action plugin has no documentation of its own: the module of the same name carries it."""
    collection = installed[1]
    actions = py_plugins(collection, "action")
    missing = [name for name in actions if name not in py_plugins(collection, "modules")]
    assert not missing, f"action plugins without a module of the same name (and its docs): {missing}"


def test_ansible_doc_renders_every_role_entry_point(installed):
    collection = installed[1]
    entry_points = role_entry_points(collection)
    run = ansible_doc(installed, "-t", "role", "--json", *(f"{NS}.{role}" for role in entry_points))
    assert run.returncode == 0, run.stderr
    docs = json.loads(run.stdout)
    for role, entries in entry_points.items():
        assert sorted(docs[f"{NS}.{role}"]["entry_points"]) == entries, role
        for entry in entries:
            text = ansible_doc(installed, "-t", "role", f"{NS}.{role}", "-e", entry)
            assert text.returncode == 0, text.stderr
            assert re.search(rf"ENTRY POINT: \*?{re.escape(entry)}\*? - ", text.stdout), text.stdout[:500]
            assert docs[f"{NS}.{role}"]["entry_points"][entry].get("short_description"), (role, entry)
