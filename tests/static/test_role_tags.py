"""A role's tags are typed twice: on the phases of its tasks/main.yml, and on the include_role of
every playbook that runs it (the include's tags decide whether `--tags <phase>` reaches the role
at all). The include carries exactly the role's tags, or only the role's own tag (an include that
runs only when the whole role is asked for, such as the pre-flight health gate); anything else
means a phase tag selects nothing, or a tag was renamed on one side only."""

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE_DIRS = sorted(path.parent.parent.name for path in (REPO / "roles").glob("*/tasks/main.yml"))
PLAYBOOK_FILES = sorted((REPO / "playbooks").rglob("*.yml"))
INCLUDES = ("ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role")


def _tags(task):
    tags = task.get("tags", [])
    return {tags} if isinstance(tags, str) else set(tags)


def _tasks(items):
    """Every task of a task list, blocks flattened."""
    for task in items or []:
        if not isinstance(task, dict):
            continue
        yield task
        for key in ("block", "rescue", "always"):
            yield from _tasks(task.get(key))


def role_tags(role):
    """The tags of the role's phases (tasks/main.yml), without always."""
    tasks = yaml.safe_load((REPO / "roles" / role / "tasks" / "main.yml").read_text())
    found = set()
    for task in _tasks(tasks):
        found |= _tags(task)
    return found - {"always"}


def playbook_includes():
    """(file, task name, role, tags) of every include/import of a whole collection role in playbooks/."""
    for path in PLAYBOOK_FILES:
        data = yaml.safe_load(path.read_text()) or []
        items = []
        for entry in data:
            if isinstance(entry, dict) and "hosts" in entry:   # a play
                for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                    items.extend(entry.get(key) or [])
            else:                                               # a task file
                items.append(entry)
        for task in _tasks(items):
            for key in INCLUDES:
                spec = task.get(key)
                if isinstance(spec, dict) and "tasks_from" not in spec:
                    role = str(spec["name"]).rsplit(".", maxsplit=1)[-1]
                    yield str(path.relative_to(REPO)), task.get("name", "?"), role, _tags(task)


INCLUDED = list(playbook_includes())
# The roles with phase tags (internal roles, called by other roles with parameters, have none).
ROLES = [role for role in ROLE_DIRS if role_tags(role)]


def test_every_tagged_role_carries_its_own_tag_and_is_included_by_a_playbook():
    assert len(ROLES) >= 6, ROLES
    for role in ROLES:
        assert role in role_tags(role), role
        assert any(include[2] == role for include in INCLUDED), role


@pytest.mark.parametrize("path, name, role, tags", INCLUDED, ids=str)
def test_playbook_tags_are_the_roles_tags(path, name, role, tags):
    expected = role_tags(role)
    assert tags == expected or tags == {role}, (
        "%s, task %r: the include of %s has tags %s; roles/%s/tasks/main.yml has %s (missing on the include: %s; "
        "not in the role: %s)" % (path, name, role, sorted(tags), role, sorted(expected),
                                  sorted(expected - tags), sorted(tags - expected)))
