"""Numbers and booleans given on the command line work: every expression converts them.

Extra vars arrive as strings (`-e xinference_port=9998`, `-e cuda_toolkit_pin=no`), and
validate_argument_spec checks a value without converting it. In ansible-core 2.19 a bare string in a
conditional fails ("Conditional result ... was derived from value of type 'str'"), `'a' if flag`
takes the string "false" as true, and `port >= 1` or `timeout / 3` fail on a string. So wherever a
role's own expression (when/that/until, or a {{ }} in a task, vars file or template) reads a `bool`
option of its argument_specs it must read `| bool`, and an `int` option read in arithmetic, a
comparison or a type test must read `| int`. Passing a value on to a module parameter unconverted is
fine (the module converts), so only expressions that compute with the value are checked.
"""

import glob
import os
import re

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = sorted(name for name in os.listdir(os.path.join(REPO, "roles")) if os.path.isdir(os.path.join(REPO, "roles", name)))
BARE_KEYS = ("when", "that", "failed_when", "changed_when", "until")
JINJA = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.S)
INT_USE = re.compile(r"\s*(?:[<>]=?|==|!=|[-+*/%]|is\s+(?:not\s+)?(?:integer|number|float))")


def _typed_options(role):
    specs = yaml.safe_load(open(os.path.join(REPO, "roles", role, "meta", "argument_specs.yml")))["argument_specs"]
    typed = {}
    for spec in specs.values():
        for name, option in (spec.get("options") or {}).items():
            if option.get("type") in ("bool", "int"):
                typed[name] = option["type"]
    return typed


def _expressions(node, bare=False):
    """Every Jinja expression of a loaded YAML document (bare conditionals whole, else {{ }} spans)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _expressions(value, bare=key in BARE_KEYS)
    elif isinstance(node, list):
        for value in node:
            yield from _expressions(value, bare)
    elif isinstance(node, str):
        if bare:
            yield node
        for match in JINJA.finditer(node):
            yield match.group(1) or match.group(2)


def _sources(role):
    for path in sorted(glob.glob(os.path.join(REPO, "roles", role, "tasks", "*.yml"))
                       + glob.glob(os.path.join(REPO, "roles", role, "vars", "*.yml"))
                       + glob.glob(os.path.join(REPO, "roles", role, "handlers", "*.yml"))):
        with open(path) as handle:
            yield path, list(_expressions(yaml.safe_load(handle)))
    for path in sorted(glob.glob(os.path.join(REPO, "roles", role, "templates", "*"))):
        with open(path) as handle:
            yield path, [m.group(1) or m.group(2) for m in JINJA.finditer(handle.read())]


def unconverted(expression, typed):
    """(option, type) pairs the expression reads without the conversion its type needs."""
    found = []
    for name, kind in typed.items():
        for match in re.finditer(r"(?<![\w.'\"])%s(?![\w'\"])" % re.escape(name), expression):
            rest = expression[match.end():]
            if kind == "bool" and not re.match(r"\s*\|\s*bool\b", rest):
                found.append((name, kind))
            if kind == "int" and INT_USE.match(rest):
                found.append((name, kind))
    return found


def test_the_scanner_sees_both_holes():
    typed = {"x_flag": "bool", "x_port": "int"}
    assert unconverted("x_flag", typed) == [("x_flag", "bool")]
    assert unconverted("'a' if x_flag else 'b'", typed) == [("x_flag", "bool")]
    assert unconverted("not x_flag | bool", typed) == []
    assert unconverted("x_port >= 1", typed) == [("x_port", "int")]
    assert unconverted("(x_port / 3) | int", typed) == [("x_port", "int")]
    assert unconverted("x_port is integer", typed) == [("x_port", "int")]
    assert unconverted("x_port | int >= 1", typed) == []
    assert unconverted("'http://h:' ~ x_port", typed) == []


@pytest.mark.parametrize("role", ROLES)
def test_bool_and_int_options_are_converted_where_computed_with(role):
    typed = _typed_options(role)
    problems = []
    for path, expressions in _sources(role):
        for expression in expressions:
            for name, kind in unconverted(expression, typed):
                problems.append("%s: %s needs | %s in %r" % (os.path.relpath(path, REPO), name, kind,
                                                             " ".join(expression.split())[:160]))
    assert not problems, "\n".join(problems)
