"""Secrets never reach a log (issue 11): static checks over the modules and the task files.

- Every module option whose name looks secret (plugins/module_utils/secrets.py is_secret_name, and
  envs) is no_log in the module's real argument spec.
- Every task of roles/ and playbooks/ that would print a secret-bearing value (tests/secret_inputs.py,
  and every fact, task variable and registered result derived from one) is no_log. Printed are the
  module arguments (except an assert's conditions and the module's own no_log options), the loop
  (a loop item is printed whole at -v whatever its label), the label and the task name. Harmless
  uses are not secret: `| length`, `| bool`, `is defined`, a non-secret attribute
  (xinference_models[i].model_name, map(attribute='model_name')), and `| inferops.gpu.masked_secrets`.
- No set_fact with cacheable: true sets a secret (a jsonfile fact cache writes it 0644).
"""

import importlib
import re
import sys
from pathlib import Path

import pytest
import yaml
from ansible.module_utils import basic

from ansible_collections.inferops.gpu.plugins.module_utils.secrets import is_secret_name

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from secret_inputs import SECRET_FACTS, SECRET_INPUTS, SECRET_SOURCES  # noqa: E402  pylint: disable=wrong-import-position

TASK_FILES = sorted(list(REPO.glob("roles/*/tasks/*.yml")) + list(REPO.glob("roles/*/handlers/*.yml"))
                    + list((REPO / "playbooks").rglob("*.yml")))
MODULES = sorted(path.stem for path in (REPO / "plugins" / "modules").glob("*.py") if path.stem != "__init__")
BLOCK_KEYS = ("block", "rescue", "always")
PLAY_KEYS = ("pre_tasks", "tasks", "post_tasks", "handlers")
# Task keywords that are not the module's arguments; only those listed in PRINTED_KEYWORDS are shown.
KEYWORDS = {
    "name", "when", "register", "loop", "loop_control", "vars", "no_log", "tags", "changed_when", "failed_when",
    "until", "retries", "delay", "delegate_to", "delegate_facts", "run_once", "become", "become_user",
    "check_mode", "diff", "ignore_errors", "ignore_unreachable", "notify", "listen", "environment", "args",
    "throttle", "timeout", "any_errors_fatal", "module_defaults", "collections", "local_action", "async", "poll",
}
PRINTED_KEYWORDS = ("name", "loop")
JINJA = re.compile(r"{{(.*?)}}|{%(.*?)%}", re.DOTALL)
# After a variable: uses whose value carries nothing of it (a length, a truth value, a test).
HARMLESS_AFTER = re.compile(
    r"""\s*(?:\|\s*default\([^()]*\)\s*)?(?:\|\s*(?:length|bool|count)\b"""
    r"""|\s+is\s+(?:not\s+)?(?:defined|undefined|none|string|mapping|sequence|boolean|integer|changed)\b)""")
SUBSCRIPT = re.compile(r"\s*\[[^\[\]]*\]")
ATTRIBUTE = re.compile(r"""\.(\w+)|\[['"](\w+)['"]\]|\s*\|\s*map\(attribute=['"](\w+)['"]\)""")


# --- modules ------------------------------------------------------------------------------------

class _Captured(Exception):
    pass


def module_spec(name, monkeypatch):
    """The argument spec a module's main() really passes to AnsibleModule."""
    captured = {}

    def capture(self, argument_spec=None, **kwargs):
        captured.update(argument_spec or {})
        raise _Captured()

    monkeypatch.setattr(basic.AnsibleModule, "__init__", capture)
    module = importlib.import_module("ansible_collections.inferops.gpu.plugins.modules." + name)
    with pytest.raises(_Captured):
        module.main()
    return captured


def _options(spec, prefix=""):
    for name, option in spec.items():
        yield prefix + name, name, option
        if option.get("options"):
            yield from _options(option["options"], prefix + name + ".")


@pytest.mark.parametrize("module", MODULES)
def test_secret_looking_module_options_are_no_log(module, monkeypatch):
    spec = module_spec(module, monkeypatch)
    wrong = [path for path, name, option in _options(spec)
             if (is_secret_name(name) or name == "envs") and option.get("type") != "bool"
             and option.get("no_log") is not True]
    assert not wrong, "%s: options that look secret but are not no_log: %s" % (module, wrong)


# --- task files ---------------------------------------------------------------------------------

def _flatten(items, inherited_no_log=False, inherited_vars=None, where=""):
    """(task, no_log, vars of the enclosing blocks) of every task, blocks flattened."""
    for task in items or []:
        if not isinstance(task, dict):
            continue
        no_log = inherited_no_log or task.get("no_log") is True
        block_vars = dict(inherited_vars or {})
        if any(key in task for key in BLOCK_KEYS):
            block_vars.update(task.get("vars") or {})
            for key in BLOCK_KEYS:
                yield from _flatten(task.get(key), no_log, block_vars, where)
        else:
            yield task, no_log, block_vars


def all_tasks():
    """(file, task, no_log, block vars) of every task of roles/ and playbooks/."""
    found = []
    for path in TASK_FILES:
        data = yaml.safe_load(path.read_text()) or []
        items = []
        for entry in data if isinstance(data, list) else []:
            if isinstance(entry, dict) and "hosts" in entry:
                play_vars = entry.get("vars") or {}
                items.extend({"block": entry[key], "vars": play_vars} for key in PLAY_KEYS if entry.get(key))
            elif isinstance(entry, dict):
                items.append(entry)
        for task, no_log, block_vars in _flatten(items):
            found.append((str(path.relative_to(REPO)), task, no_log, block_vars))
    return found


def action_of(task):
    for key, value in task.items():
        if key not in KEYWORDS and not key.startswith("with_"):
            return key, value
    return None, None


def _expressions(value):
    """The Jinja expressions in a value (strings anywhere in it)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from _expressions(item)
    elif isinstance(value, str):
        for match in JINJA.finditer(value):
            yield match.group(1) or match.group(2) or ""


def harmful(value, secrets):
    """The secret-bearing names whose value the Jinja in value would show."""
    return set(_shows(value, secrets))


def _shows(value, secrets):
    """name -> 'attribute' when value shows a secret attribute of it (or all of a plain secret),
    'whole' when it shows an element or all of a secret with secret attributes."""
    found = {}
    for expression in _expressions(value):
        if "masked_secrets" in expression:
            continue
        for name, attributes in secrets.items():
            # Not in a string literal ('xinference_env': a dict key, a variable's name).
            for match in re.finditer(r"(?<![\w'\"])%s\b" % re.escape(name), expression):
                rest = expression[match.end():]
                # {% for x in secret %}: x is not followed (a limit of this check).
                if HARMLESS_AFTER.match(rest) or re.search(r"\bfor\s+\w+\s+in\s*$", expression[:match.start()]):
                    continue
                kind = "attribute"
                if attributes:
                    while SUBSCRIPT.match(rest) and not re.match(r"\s*\[['\"]", rest):
                        rest = rest[SUBSCRIPT.match(rest).end():]
                    attribute = ATTRIBUTE.match(rest)
                    if attribute and (attribute.group(1) or attribute.group(2) or attribute.group(3)) not in attributes:
                        continue
                    kind = "attribute" if attribute else "whole"
                if found.get(name) != "attribute":
                    found[name] = kind
    return found


def _derived(value, secrets):
    """What a variable defined by value carries: the secret attributes of the secrets it shows
    when each of them has some (an element of xinference_models: its envs), else the whole (None)."""
    shown = _shows(value, secrets)
    if shown and all(kind == "whole" for kind in shown.values()):
        return tuple(sorted(set().union(*(secrets[name] for name in shown))))
    return None


def no_log_options(action, spec_cache, monkeypatch):
    if not action or not action.startswith("inferops.gpu."):
        return set()
    name = action.split(".")[-1]
    if name not in MODULES:
        return set()
    if name not in spec_cache:
        spec_cache[name] = set(key for key, option in module_spec(name, monkeypatch).items() if option.get("no_log"))
    return spec_cache[name]


def analyse(monkeypatch):
    """(secrets found, leaks, cacheable secrets): the secret-bearing names after propagation through
    set_fact, register and task vars, then every task that would print one without no_log."""
    tasks = all_tasks()
    secrets = dict(SECRET_INPUTS)
    secrets.update(SECRET_SOURCES)
    spec_cache = {}
    while True:
        before = dict(secrets)
        leaks, cached = [], []
        for path, task, no_log, block_vars in tasks:
            local = dict(secrets)
            for _depth in range(3):  # task vars referring to task vars
                for key, value in list(block_vars.items()) + list((task.get("vars") or {}).items()):
                    if harmful(value, local):
                        local[key] = _derived(value, local)
            action, args = action_of(task)
            args = args if isinstance(args, dict) else {"_raw": args}
            shown = dict(args)
            if action in ("ansible.builtin.assert", "assert"):
                shown.pop("that", None)
            for option in no_log_options(action, spec_cache, monkeypatch):
                shown.pop(option, None)
            printed = harmful([shown] + [task.get(key) for key in PRINTED_KEYWORDS]
                              + [(task.get("loop_control") or {}).get("label")]
                              + [task.get(key) for key in task if key.startswith("with_")], local)
            label = "%s: %s" % (path, task.get("name", action))
            if printed and not no_log:
                leaks.append("%s prints %s" % (label, sorted(printed)))
            if action in ("ansible.builtin.set_fact", "set_fact"):
                for key, value in args.items():
                    if key != "cacheable" and harmful(value, local):
                        secrets.setdefault(key, _derived(value, local))
                        if args.get("cacheable") in (True, "true", "yes"):
                            cached.append("%s caches %s" % (label, key))
            # A result shows its module's arguments (invocation), its own no_log options censored.
            if task.get("register") and harmful(shown, local):
                secrets.setdefault(task["register"], ("invocation",))
        if secrets == before:
            return secrets, leaks, cached


@pytest.fixture(scope="module")
def analysis():
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield analyse(monkeypatch)


def test_the_analysis_sees_the_derived_secrets(analysis):
    secrets = analysis[0]
    assert set(SECRET_FACTS) <= set(secrets), sorted(set(SECRET_FACTS) - set(secrets))


def test_no_task_prints_a_secret(analysis):
    leaks = analysis[1]
    assert not leaks, "tasks that would print a secret without no_log:\n" + "\n".join(leaks)


def test_no_secret_is_a_cacheable_fact(analysis):
    cached = analysis[2]
    assert not cached, "\n".join(cached)


@pytest.mark.parametrize("expression,expected", [
    ("{{ xinference_admin_password }}", {"xinference_admin_password"}),
    ("{{ xinference_admin_password | length >= 8 }}", set()),
    ("{{ xinference_cluster_auth_key | default('') | length > 0 }}", set()),
    ("{{ xinference_models | map(attribute='model_name') | join(', ') }}", set()),
    ("{{ xinference_models | map(attribute='envs') | list }}", {"xinference_models"}),
    ("{{ xinference_models[0].model_name }}", set()),
    ("{{ xinference_models[0]['envs'] }}", {"xinference_models"}),
    ("{{ xinference_models }}", {"xinference_models"}),
    ("{{ xinference_env | inferops.gpu.masked_secrets }}", set()),
    ("xinference_admin_password is not shown in plain text", set()),
])
def test_harmful_expressions(expression, expected):
    """The checker itself: what it counts as showing a secret."""
    assert harmful(expression, dict(SECRET_INPUTS)) == expected


@pytest.mark.parametrize("secret,actions", [
    # The registry login (issue 14): docker login with the password, and the pull it allows.
    ("xinference_registry_password", {"community.docker.docker_login"}),
    # The engine virtualenv's index: its URL (credentials) goes into the container's environment.
    ("xinference_pip_index_url", {"community.docker.docker_container"}),
])
def test_registry_login_and_index_tasks_are_no_log(secret, actions):
    """Every task whose arguments carry the registry password or the index URL unmasked is no_log,
    and the tasks that must use them are among them (the check cannot pass by finding none)."""
    using = []
    for path, task, no_log, block_vars in all_tasks():
        action, args = action_of(task)
        shown = [args, task.get("vars"), block_vars] + [task.get(key) for key in PRINTED_KEYWORDS]
        if harmful(shown, {secret: None}):
            using.append((action, no_log, "%s: %s" % (path, task.get("name", action))))
    assert actions <= {entry[0] for entry in using}, using
    assert [entry[2] for entry in using if not entry[1]] == []
