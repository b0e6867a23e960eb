"""Release conventions: the changelog, the docs lint, and the versions the collection claims.

- changelogs/ is managed by antsibull-changelog: its fragments and changelog.yaml lint clean,
  and CHANGELOG.md is exactly what `antsibull-changelog generate` renders from changelog.yaml
  (one source of truth; unreleased changes are the fragments in changelogs/fragments/).
- galaxy.yml's version is the release the tree builds toward: the changelog's latest release
  when no fragment is pending, a later version when fragments are waiting for the next release.
- meta/runtime.yml's requires_ansible admits the ansible-core that requirements-dev.txt pins
  (the only one the suite runs) and claims nothing older than its minor release.
- every module's and plugin's version_added is the first release whose changelog lists it, or
  galaxy.yml's version for one no release lists yet (what ansible-doc tells a user is true).
- `antsibull-docs lint-collection-docs --plugin-docs --validate-collection-refs=self` passes
  (`--skip-rstcheck`):
  every module, plugin and role renders, and every reference to this collection resolves.

Everything runs on copies in a temporary directory; the checkout is never written. About 12 s.
"""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

from harness import REPO, tool_env  # noqa: E402

CHANGELOGS = REPO / "changelogs"
# What a docs lint needs of the checkout; tests and scenarios are not part of the collection.
NOT_COLLECTION = ("tests/", "molecule/", ".ci/", ".config/")


def _run(cmd, cwd):
    run = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=300, check=False)
    return run.returncode, run.stdout + run.stderr


def _galaxy():
    return yaml.safe_load((REPO / "galaxy.yml").read_text())


def _releases():
    return yaml.safe_load((CHANGELOGS / "changelog.yaml").read_text())["releases"]


def _pending_fragments():
    return sorted(p.name for p in (CHANGELOGS / "fragments").glob("*.y*ml"))


def test_changelog_fragments_and_yaml_lint_clean():
    rc, out = _run(["antsibull-changelog", "lint"], REPO)
    assert rc == 0 and not out.strip(), f"antsibull-changelog lint (rc {rc}):\n{out}"
    rc, out = _run(["antsibull-changelog", "lint-changelog-yaml", "changelogs/changelog.yaml"], REPO)
    assert rc == 0 and not out.strip(), f"antsibull-changelog lint-changelog-yaml (rc {rc}):\n{out}"


def test_changelog_md_is_generated_from_changelog_yaml(tmp_path):
    shutil.copy(REPO / "galaxy.yml", tmp_path)
    shutil.copytree(CHANGELOGS, tmp_path / "changelogs",
                    ignore=shutil.ignore_patterns(".plugin-cache.yaml"))
    rc, out = _run(["antsibull-changelog", "generate"], tmp_path)
    assert rc == 0, out
    want = (tmp_path / "CHANGELOG.md").read_text()
    assert (REPO / "CHANGELOG.md").read_text() == want, (
        "CHANGELOG.md is generated: add a fragment to changelogs/fragments/ (or release with "
        "antsibull-changelog release) and run `antsibull-changelog generate`; do not edit it by hand")


def test_galaxy_version_is_the_release_the_tree_builds_toward():
    version = Version(str(_galaxy()["version"]))
    latest = max(Version(str(v)) for v in _releases())
    pending = _pending_fragments()
    if pending:
        assert version > latest, (
            f"galaxy.yml version {version} is already released (latest in changelogs/changelog.yaml: "
            f"{latest}) but fragments wait for the next release: {pending}; set the next version")
    else:
        assert version == latest, (
            f"galaxy.yml version {version} but the changelog's latest release is {latest} and no "
            "fragment is pending")


def test_requires_ansible_admits_the_tested_ansible_core():
    pinned = re.search(r"^ansible-core==(\S+)$", (REPO / "requirements-dev.txt").read_text(), re.M)
    assert pinned, "requirements-dev.txt pins no ansible-core"
    tested = Version(pinned.group(1))
    spec = SpecifierSet(yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())["requires_ansible"])
    assert tested in spec, f"meta/runtime.yml requires_ansible {spec} excludes the tested ansible-core {tested}"
    # Nothing older than the tested minor release is claimed: it is never run.
    older = Version(f"{tested.major}.{tested.minor - 1}.99")
    assert older not in spec, (
        f"meta/runtime.yml requires_ansible {spec} admits ansible-core {older}, which the suite never "
        f"runs (it pins {tested})")


def _documented_plugins():
    """(kind, name, version_added) of every module and plugin from its DOCUMENTATION."""
    found = []
    for path in sorted((REPO / "plugins").glob("*/*.py")):
        kind = path.parent.name
        # filters: .yml docs; actions: their module's; doc fragments are parts of their modules' docs
        if kind in ("module_utils", "filter", "action", "doc_fragments"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "DOCUMENTATION" for t in node.targets):
                doc = yaml.safe_load(node.value.value)
                found.append(("modules" if kind == "modules" else kind, path.stem, doc.get("version_added")))
    for path in sorted((REPO / "plugins" / "filter").glob("*.yml")):
        doc = yaml.safe_load(path.read_text())["DOCUMENTATION"]
        found.append(("filter", doc["name"], doc.get("version_added")))
    return found


def test_version_added_is_the_release_that_first_lists_it():
    first = {}
    for version in sorted(_releases(), key=lambda v: Version(str(v))):
        release = _releases()[version]
        entries = [("modules", item["name"]) for item in release.get("modules", [])]
        entries += [(kind, item["name"]) for kind, items in (release.get("plugins") or {}).items() for item in items]
        for entry in entries:
            first.setdefault(entry, str(version))
    upcoming = str(_galaxy()["version"])
    wrong = [f"{kind} {name}: version_added {added!r}, want {first.get((kind, name), upcoming)!r}"
             for kind, name, added in _documented_plugins()
             if str(added) != first.get((kind, name), upcoming)]
    assert len(_documented_plugins()) >= 25
    assert not wrong, "version_added does not match changelogs/changelog.yaml (" \
        "a release lists it) or galaxy.yml (not released yet):\n" + "\n".join(wrong)


def test_antsibull_docs_lint_collection_docs(tmp_path):
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    root = tmp_path / "ansible_collections" / "inferops" / "gpu"
    for rel in files:
        src = REPO / rel
        if not rel or rel.startswith(NOT_COLLECTION) or not src.is_file():
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, root / rel)
    # --skip-rstcheck: rstcheck only re-checks the RST antsibull-docs generates for the Ansible
    # docsite (which this collection is not built into) and doubles the cost (17 s vs 9 s of CPU);
    # schema, markup and reference checks all run.
    rc, out = _run(["antsibull-docs", "lint-collection-docs", "--plugin-docs", "--skip-rstcheck",
                    "--validate-collection-refs=self", "."], root)
    assert rc == 0, f"antsibull-docs lint-collection-docs (rc {rc}):\n{out}"
