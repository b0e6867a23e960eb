"""module_utils/gpu_health_render.py: the one renderer of the gpu_health results.

gpu_health_checks keeps the checks; the module's failure message, the filters' textfile, tables and
fleet report, and the timer's runner on the host all render through gpu_health_render. The
renderings themselves are asserted in test_gpu_health_module.py and test_gpu_health_filters.py.
"""

import ast
import os
import re

import pytest

from ansible_collections.inferops.gpu.plugins.filter import gpu_health as filters
from ansible_collections.inferops.gpu.plugins.module_utils import gpu_health_checks, gpu_health_render
from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_checks import run_health

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def acs_facts(fake_gpu_host):
    host = fake_gpu_host("pcie-4-acs")
    return run_health(sysfs_root=host.sysfs_root, procfs_root=host.procfs_root, kernel_log=host.kernel_log,
                      expected_gpu_count=4)


def test_checks_module_keeps_no_rendering():
    for name in ("render_prometheus", "checks_matching", "METRIC_HELP", "host_table", "fleet_report"):
        assert not hasattr(gpu_health_checks, name), name


def test_filters_are_the_renderer(acs_facts):
    assert filters.gpu_health_prometheus(acs_facts) == gpu_health_render.render_prometheus(acs_facts)
    assert filters.gpu_health_table(acs_facts, "h") == gpu_health_render.host_table(acs_facts, "h")
    assert filters.gpu_health_host(acs_facts, "h") == gpu_health_render.host_summary(acs_facts, "h")
    fleet = {"h": acs_facts, "gone": None}
    assert filters.gpu_health_fleet(fleet) == gpu_health_render.fleet_report(fleet)
    report = gpu_health_render.fleet_report(fleet)
    assert filters.gpu_health_fleet_markdown(report, "T") == gpu_health_render.fleet_markdown(report, "T")
    assert filters.gpu_health_failing(acs_facts, ["fail"]) == gpu_health_render.checks_matching(acs_facts, ["fail"])


def test_failing_lines_are_the_summarys_wording(acs_facts):
    assert gpu_health_render.checks_matching(acs_facts, ["fail", "error"]) == acs_facts["summary"]["failing"]


def _imports(path):
    tree = ast.parse(open(path).read())
    return sorted(set(node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module))


def test_module_and_timer_render_through_module_utils():
    module = _imports(os.path.join(REPO, "plugins", "modules", "gpu_health.py"))
    assert "ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_render" in module
    runner = open(os.path.join(REPO, "roles", "gpu_health", "templates", "gpu_health_check.py.j2")).read()
    assert "module_utils.gpu_health_render import" in runner


def test_timer_copies_every_module_util_the_runner_needs():
    """The timer installs module_utils files by name: every one the checks and the renderer import."""
    timer = open(os.path.join(REPO, "roles", "gpu_health", "tasks", "timer.yml")).read()
    needed = {"gpu_health_checks", "gpu_health_render"}
    for name in ("gpu_health_checks", "gpu_health_render"):
        path = os.path.join(REPO, "plugins", "module_utils", name + ".py")
        needed |= set(re.findall(r"plugins\.module_utils\.(\w+)", " ".join(_imports(path))))
    for name in sorted(needed):
        assert re.search(r"^\s+- %s\.py$" % name, timer, re.M), name
