"""gpu_health's preflight rules (the gpu_health_preflight_errors filter): one message per broken rule,
each naming the variable, the value and what is allowed; numbers given as strings (-e) are accepted."""

import os

import yaml

from ansible_collections.inferops.gpu.plugins.filter.gpu_health import gpu_health_preflight_errors

# Not `from conftest import REPO`: which conftest module that name finds depends on what else the
# session collected (tests/integration has one too).
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULTS = yaml.safe_load(open(REPO + "/roles/gpu_health/defaults/main.yml"))
NAMES = ("gpu_health_expected_gpu_count", "gpu_health_apt_cache_valid_time", "gpu_health_timer_randomized_delay_sec",
         "gpu_health_limits", "gpu_health_report_path", "gpu_health_textfile_path", "gpu_health_venv_path",
         "gpu_health_timer_install_dir", "gpu_health_timer_config_path")


def settings(**changes):
    values = dict((name, DEFAULTS[name]) for name in NAMES)
    values.update(changes)
    return values


def test_the_defaults_pass():
    assert gpu_health_preflight_errors(settings()) == []


def test_numbers_given_as_strings_pass():
    assert gpu_health_preflight_errors(settings(gpu_health_expected_gpu_count="8", gpu_health_apt_cache_valid_time="0",
                                                gpu_health_timer_randomized_delay_sec="60",
                                                gpu_health_limits={"temperature_warn_c": "90"})) == []


def test_a_relative_report_path_names_the_variable_and_value():
    errors = gpu_health_preflight_errors(settings(gpu_health_report_path="report.json"))
    assert errors == ['gpu_health_report_path="report.json" must be an absolute path without blanks or line breaks (it starts with /)']


def test_one_message_per_broken_rule():
    errors = gpu_health_preflight_errors(settings(
        gpu_health_expected_gpu_count=-1, gpu_health_apt_cache_valid_time="-5", gpu_health_timer_randomized_delay_sec=True,
        gpu_health_limits={"temperature_warn_c": -3, "xid_fatal": [48, -1], "mig_allowed": False},
        gpu_health_report_path="", gpu_health_textfile_path="/var/lib/x.txt", gpu_health_venv_path="venv",
        gpu_health_timer_install_dir="/opt/x\n", gpu_health_timer_config_path="rel/x.json"))
    assert len(errors) == 10, errors
    for needle in ("gpu_health_expected_gpu_count=-1 ", 'gpu_health_apt_cache_valid_time="-5"',
                   "gpu_health_timer_randomized_delay_sec=true", "gpu_health_limits.temperature_warn_c=-3",
                   "gpu_health_limits.xid_fatal=[48, -1]", 'gpu_health_report_path=""',
                   'gpu_health_textfile_path="/var/lib/x.txt" must end in .prom', 'gpu_health_venv_path="venv"',
                   'gpu_health_timer_install_dir="/opt/x\\n"', 'gpu_health_timer_config_path="rel/x.json"'):
        assert sum(needle in error for error in errors) == 1, (needle, errors)


def test_a_trailing_newline_after_prom_is_refused():
    errors = gpu_health_preflight_errors(settings(gpu_health_textfile_path="/var/lib/x.prom\n"))
    assert len(errors) == 2 and all("gpu_health_textfile_path" in error for error in errors), errors
