"""Generated bad input: every role refuses malformed values before any task changes the host, naming
the variable, and accepts the good ones (numbers given as strings, YAML booleans for bool options).

Two parts, no container (validation happens before any task touches a host):

1. argument_specs, in-process: for every option of every role's main entry point, values derived from
   its type, choices and elements (hypothesis, derandomized) go through Ansible's ArgumentSpecValidator,
   what validate_argument_spec runs. Wrong types and values outside choices must be refused with the
   option named; numbers as strings ("9998") for int options and yes/on/true/1/no/off for bool options
   must be accepted.
2. preflight, one ansible-playbook process for all roles: one inventory host per case (all on this
   machine, connection local, facts from one setup call through a jsonfile fact cache), in check mode.
   Each host runs validate_argument_spec with the role's spec and then only the role's preflight
   phase (tasks_from), inside block/rescue; the outcome of every case lands in one JSON file. The
   values are derived from the preflight rules (RULES below): mutations of a good value (trailing
   newline or blank, leading blank, empty, unicode, very long, YAML booleans, negative, zero) must
   be refused with the variable named in the message; good values, numbers as strings among them,
   must pass. The run must report no change at all (check mode, preflight only).
"""

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(path.name for path in (REPO / "roles").iterdir() if (path / "meta" / "argument_specs.yml").exists())
PLAYBOOK_BIN = REPO / ".venv" / "bin" / "ansible-playbook"
ANSIBLE_BIN = REPO / ".venv" / "bin" / "ansible"
BOOL_WORDS = ["yes", "no", "on", "off", "true", "false", "True", "False", "1", "0", "y", "n"]
FIXED = settings(derandomize=True, database=None, deadline=None, max_examples=10,
                 suppress_health_check=list(HealthCheck))


@functools.lru_cache(maxsize=None)
def spec(role):
    return yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]


# -- part 1: argument_specs in-process ----------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _validator(role):
    return ArgumentSpecValidator(spec(role))


def _validate(role, name, value):
    result = _validator(role).validate({name: value})
    return result.error_messages


def _typed(kind):
    return [(role, name, option) for role in ROLES for name, option in spec(role).items() if option.get("type") == kind]


NOT_INT = st.one_of(
    st.text(min_size=1, max_size=12).filter(lambda text: not _int_like(text)),
    st.sampled_from(["yes", "on", "1.5", "0x1f", "", "9998 ports"]),
    st.lists(st.integers(), min_size=1, max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), min_size=1),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda number: not float(number).is_integer()))
BOOL_LIKE = ("yes", "no", "on", "off", "true", "false", "1", "0", "y", "n", "t", "f", "1.0", "0.0")
NOT_BOOL = st.one_of(st.text(min_size=1, max_size=10).filter(lambda text: text.strip().lower() not in BOOL_LIKE),
                     st.integers().filter(lambda number: number not in (0, 1)))


def _int_like(text):
    try:
        int(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("role,name,option", _typed("int"), ids=lambda value: value if isinstance(value, str) else "")
def test_int_options_refuse_non_numbers_and_accept_numbers_as_strings(role, name, option):
    @FIXED
    @given(bad=NOT_INT, good=st.integers(min_value=0, max_value=10 ** 6))
    def check(bad, good):
        errors = _validate(role, name, bad)
        assert errors and name in errors[0], (name, bad, errors)
        if option.get("choices"):
            good = option["choices"][good % len(option["choices"])]
        assert _validate(role, name, str(good)) == [], (name, str(good))
    check()


@pytest.mark.parametrize("role,name,option", _typed("bool"), ids=lambda value: value if isinstance(value, str) else "")
def test_bool_options_accept_yaml_booleans_and_refuse_the_rest(role, name, option):
    for word in BOOL_WORDS:
        assert _validate(role, name, word) == [], (name, word)

    @FIXED
    @given(bad=NOT_BOOL)
    def check(bad):
        errors = _validate(role, name, bad)
        assert errors and name in errors[0], (name, bad, errors)
    check()


CHOICES = [(role, name, option) for role in ROLES for name, option in spec(role).items() if option.get("choices")]


@pytest.mark.parametrize("role,name,option", CHOICES, ids=lambda value: value if isinstance(value, str) else "")
def test_choices_are_matched_whole(role, name, option):
    choices = [str(choice) for choice in option["choices"]]
    # An int option converts "0\n" to 0 (a choice): junk that is not blank then.
    junks = ["x", " beta", "\u00e9"] + ([] if option.get("type") == "int" else ["\n", " ", "\t"])

    @FIXED
    @given(choice=st.sampled_from(choices), junk=st.sampled_from(junks),
           where=st.booleans())
    def check(choice, junk, where):
        bad = junk + choice if where else choice + junk
        errors = _validate(role, name, bad)
        assert errors and name in " ".join(errors), (name, bad, errors)
    check()


# -- part 2: preflight, one playbook run -----------------------------------------------------------

SUFFIXES = ["\n", " ", "\r\n", "\t", " beta"]
UNICODE = ["\u00e9", "\u0661", "\uff11", "\u200b", "\u2028"]


def _mutations(good, allow_empty=False):
    """Malformed variants of a good string (hypothesis, derandomized): trailing newline or blank, leading
    blank, unicode, very long, empty, YAML booleans (the string yes and the boolean true)."""
    found = []

    @settings(derandomize=True, database=None, deadline=None, max_examples=1, suppress_health_check=list(HealthCheck))
    @given(suffix=st.sampled_from(SUFFIXES), char=st.sampled_from(UNICODE), times=st.integers(300, 2000))
    def draw(suffix, char, times):
        found.extend([good + suffix, good + char, char + good, " ".join([good] * (times // len(good)))])
    draw()
    found.extend([" " + good, "yes", True])
    if not allow_empty:
        found.append("")
    # Unique, in a fixed order.
    seen, unique = set(), []
    for value in found:
        key = json.dumps(value)
        if key not in seen and value != good:
            seen.add(key)
            unique.append(value)
    return unique


# role: entry tasks (tasks_from, in order), base variables of every case, constrained strings (good
# values; each one's mutations must be refused), int options with the least value a rule allows
# (numbers as strings accepted, one less refused), absolute paths, and extra hand-made cases.
RULES = {
    "xinference": {
        "entry": ["preflight"],
        "base": {"xinference_admin_password": "correct-horse-battery", "xinference_gpu_health_gather": "never",
                 "xinference_gpus": "none"},
        "strings": {"xinference_image_tag": ["v4.1.0", "4.1.0-cpu", "v1.4.1"], "xinference_version": ["4.1.0", "3.2"],
                    "xinference_shm_size": ["64g", "512m"], "xinference_admin_username": ["admin", "ops.admin@x"]},
        "ints": {"xinference_port": 1, "xinference_supervisor_port": 1, "xinference_worker_port": 1,
                 "xinference_metrics_exporter_port": 1},
        "paths": ["xinference_home_host_path", "xinference_home_container_path", "xinference_api_key_path"],
        "good": [{"xinference_port": "9998"}, {"xinference_gpus": "2"}, {"xinference_gpus": [0, 1]},
                 {"xinference_image_tag": "latest", "xinference_version": "4.1.0"},
                 {"xinference_ulimit_memlock": {"soft": "-1", "hard": "-1"}}, {"xinference_ipc_host": "yes"},
                 {"xinference_auth_enabled": "no", "xinference_admin_password": ""},
                 {"xinference_driver_min_version": "560"}, {"xinference_model_volumes": ["/models:/models:ro"]}],
        "bad": [({"xinference_port": "70000"}, "xinference_port"), ({"xinference_port": "99 98"}, "xinference_port"),
                ({"xinference_gpus": "2\n"}, "xinference_gpus"), ({"xinference_gpus": [0, 0]}, "xinference_gpus"),
                ({"xinference_model_volumes": ["/a:/b\n"]}, "xinference_model_volumes"),
                ({"xinference_env": {"BAD NAME": "1"}}, "xinference_env"),
                ({"xinference_env": {"X": "a\nb"}}, "xinference_env"),
                ({"xinference_ulimit_memlock": {"soft": "-2", "hard": "-1"}}, "xinference_ulimit_memlock"),
                ({"xinference_admin_password": "short"}, "xinference_admin_password")],
    },
    "gpu_health": {
        "entry": ["preflight"],
        "base": {},
        "strings": {"gpu_health_textfile_path": ["/var/lib/node_exporter/x.prom"]},
        "ints": {"gpu_health_expected_gpu_count": 0, "gpu_health_apt_cache_valid_time": 0,
                 "gpu_health_timer_randomized_delay_sec": 0},
        "paths": ["gpu_health_report_path", "gpu_health_venv_path", "gpu_health_timer_install_dir",
                  "gpu_health_timer_config_path"],
        "good": [{"gpu_health_limits": {"temperature_warn_c": "90"}}, {"gpu_health_report_enabled": "off"}],
        "bad": [({"gpu_health_limits": {"temperature_warn_c": -1}}, "gpu_health_limits.temperature_warn_c")],
    },
    "nccl_tuning": {
        "entry": ["preflight"],
        "base": {},
        "strings": {"nccl_tuning_host_shm_size": ["64g", "50%", "auto"], "nccl_tuning_memlock_limit": ["unlimited", "1024"],
                    "nccl_tuning_acs_clear_unit_name": ["inferops-acs-clear.service"]},
        "ints": {},
        "paths": ["nccl_tuning_conf_path", "nccl_tuning_env_file_path"],
        "good": [{"nccl_tuning_acs_clear_enabled": "yes", "nccl_tuning_acs_clear_iommu_risk_accepted": "true"},
                 {"nccl_tuning_env_pinned": {"NCCL_P2P_DISABLE": "1"}}],
        "bad": [({"nccl_tuning_acs_clear_enabled": "yes", "nccl_tuning_acs_clear_iommu_risk_accepted": "no"},
                 "nccl_tuning_acs_clear_iommu_risk_accepted"),
                ({"nccl_tuning_acs_clear_bridges": ["0000:17:02.0\n"]}, "nccl_tuning_acs_clear_bridges"),
                ({"nccl_tuning_memlock_domains": ["*\n"]}, "nccl_tuning_memlock_domains")],
    },
    "container_runtime": {
        "entry": ["platform", "validate"],
        "base": {},
        "strings": {"container_runtime_default_shm_size": ["64m", "1G"], "container_runtime_log_max_size": ["100m"],
                    "container_runtime_nvidia_toolkit_version": ["1.17.8"]},
        "ints": {"container_runtime_log_max_file": 1},
        "paths": [],
        "good": [{"container_runtime_ulimit_memlock": {"soft": "-1", "hard": "-1"}}],
        "bad": [({"container_runtime_ulimit_stack": {"soft": "-2", "hard": "-1"}}, "container_runtime_ulimit_stack")],
    },
    "cuda_toolkit": {
        "entry": ["vars", "preflight"],
        "base": {"cuda_toolkit_source": "cuda_repo"},
        "strings": {"cuda_toolkit_version": ["12.4"], "cuda_toolkit_nccl_version": ["2.22.3"]},
        "ints": {},
        "paths": [],
        "good": [{"cuda_toolkit_nccl": "no"}],
        "bad": [],
    },
    "nvidia_driver": {
        "entry": ["vars", "preflight"],
        "base": {"nvidia_driver_source": "cuda_repo"},
        "strings": {"nvidia_driver_branch": ["550"]},
        "ints": {},
        "paths": [],
        "good": [{"nvidia_driver_branch": "550", "nvidia_driver_version": "550.127.05-1"},
                 {"nvidia_driver_secure_boot_signed": "yes"}],
        "bad": [({"nvidia_driver_version": "550.127.05-1\n"}, "nvidia_driver_version")],
    },
}
# Values some rules must refuse besides the string mutations (not every mutation applies: a
# version with a trailing blank is one thing, an empty version may mean "derive it").
EMPTY_ALLOWED = {"xinference_version", "nvidia_driver_branch", "xinference_shm_size", "container_runtime_nvidia_toolkit_version",
                 "cuda_toolkit_version", "cuda_toolkit_nccl_version"}
# Accepted mutations: a string a rule cannot refuse without refusing a good value.
ACCEPTED_MUTATIONS = {("xinference_admin_username", "yes")}  # a plain name


def cases():
    """(name, role, variables, expected): expected is None (accepted) or the variable the refusal must name."""
    found = []

    def add(role, variables, expected):
        found.append(("c%03d_%s" % (len(found), role), role, dict(RULES[role]["base"], **variables), expected))

    for role, rules in RULES.items():
        add(role, {}, None)
        for name, goods in rules["strings"].items():
            for good in goods:
                add(role, {name: good}, None)
            for bad in _mutations(goods[0], allow_empty=name in EMPTY_ALLOWED):
                add(role, {name: bad}, None if (name, bad) in ACCEPTED_MUTATIONS else name)
        for name, least in rules["ints"].items():
            add(role, {name: str(least + 3)}, None)
            for bad in (str(least - 1), "\uff13", True):
                add(role, {name: bad}, name)
        for name in rules["paths"]:
            for bad in ("relative/path", ""):
                add(role, {name: bad}, name)
        for variables in rules["good"]:
            add(role, variables, None)
        for variables, name in rules["bad"]:
            add(role, variables, name)
    return found


PLAYBOOK = """
- name: Bad input, generated (check mode, argument validation and the preflight phase only)
  hosts: cases
  gather_facts: false
  tasks:
    - name: One case
      block:
        - name: Argument validation, as the role's entry point runs it
          ansible.builtin.validate_argument_spec:
            argument_spec: "{{ (lookup('ansible.builtin.file', roles_dir ~ '/' ~ case_role ~ '/meta/argument_specs.yml')
                               | from_yaml).argument_specs.main.options }}"
        - name: The role's preflight phase
          ansible.builtin.include_role:
            name: "inferops.gpu.{{ case_role }}"
            tasks_from: "{{ case_entry }}"
          loop: "{{ case_entries }}"
          loop_control:
            loop_var: case_entry
        - name: Accepted
          ansible.builtin.set_fact:
            case_result: {failed: false}
      rescue:
        - name: Refused
          ansible.builtin.set_fact:
            case_result: {failed: true, task: "{{ ansible_failed_task.name }}", msg: "{{ __msgs | join('; ') }}"}
          vars:
            # A looped assert reports "One or more items failed"; each item's message names the variable.
            __msgs: "{{ [ansible_failed_result.msg | default('') | string]
                        + ansible_failed_result.results | default([]) | selectattr('failed', 'defined') | selectattr('failed')
                          | map(attribute='msg') | map('string') | list }}"

    - name: Keep every outcome
      ansible.builtin.copy:
        content: "{{ dict(ansible_play_hosts_all | zip(ansible_play_hosts_all | map('extract', hostvars, 'case_result'))) | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
      run_once: true
      delegate_to: localhost
      check_mode: false
      changed_when: false
"""


def _env(tmp_path, cache):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_FORKS="8", ANSIBLE_CACHE_PLUGIN="jsonfile", ANSIBLE_CACHE_PLUGIN_CONNECTION=str(cache),
               ANSIBLE_CACHE_PLUGIN_TIMEOUT="86400", ANSIBLE_GATHERING="explicit", ANSIBLE_HOST_KEY_CHECKING="0",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_INJECT_FACTS_AS_VARS="False")
    for name in ("ANSIBLE_CONFIG", "ANSIBLE_CALLBACKS_ENABLED"):
        env.pop(name, None)
    return env


def test_every_role_refuses_generated_bad_input_before_any_change(tmp_path):
    started = time.monotonic()
    assert (REPO / ".collections" / "ansible_collections" / "inferops" / "gpu").exists()
    generated = cases()
    cache = tmp_path / "facts"
    env = _env(tmp_path, cache)
    # One setup on this machine; every case host reads a copy of its facts from the cache.
    setup = subprocess.run([str(ANSIBLE_BIN), "localhost", "-i", "localhost,", "-c", "local", "-m", "ansible.builtin.setup",
                            "-a", "gather_subset=min,network,virtual", "-e", "ansible_python_interpreter=" + sys.executable],
                           env=dict(env, ANSIBLE_LOAD_CALLBACK_PLUGINS="1"), cwd=tmp_path, capture_output=True, text=True,
                           check=False, timeout=120)
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    gathered = json.loads(setup.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["ansible_facts"]
    cache.mkdir(exist_ok=True)
    facts = json.dumps(dict((key[len("ansible_"):] if key.startswith("ansible_") else key, value)
                            for key, value in gathered.items()))
    hosts = {}
    for name, role, variables, unused_expected in generated:
        (cache / name).write_text(facts)
        hosts[name] = dict(variables, ansible_connection="local", ansible_python_interpreter=sys.executable,
                           case_role=role, case_entries=RULES[role]["entry"])
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"children": {"cases": {"hosts": hosts}}}}))
    (tmp_path / "cases.yml").write_text(PLAYBOOK)
    out = tmp_path / "outcomes.json"
    run = subprocess.run([str(PLAYBOOK_BIN), "-i", "inventory.yml", "cases.yml", "--check",
                          "-e", json.dumps({"out": str(out), "roles_dir": str(REPO / "roles")})],
                         cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=900)
    assert run.returncode == 0 and out.exists(), run.stdout[-5000:] + run.stderr[-3000:]
    stats = json.loads(run.stdout)["stats"]
    # Check mode and the preflight phase only: not even a would-be change on this machine.
    assert all(host["changed"] == 0 for host in stats.values()), dict((k, v) for k, v in stats.items() if v["changed"])
    outcomes = json.loads(out.read_text())
    problems = []
    for name, role, variables, expected in generated:
        outcome = outcomes.get(name) or {"failed": True, "msg": "no outcome"}
        shown = json.dumps(variables, ensure_ascii=True)[:160]
        if expected is None and outcome["failed"]:
            problems.append("%s %s: good value refused: %s" % (role, shown, outcome["msg"][:300]))
        elif expected is not None and not outcome["failed"]:
            problems.append("%s %s: bad value accepted (%s)" % (role, shown, expected))
        elif expected is not None and expected not in outcome["msg"]:
            problems.append("%s %s: refused without naming %s: %s" % (role, shown, expected, outcome["msg"][:300]))
    seconds = time.monotonic() - started
    print("generated bad-input cases: %d in %.1f s" % (len(generated), seconds))
    assert not problems, "%d of %d cases:\n%s" % (len(problems), len(generated), "\n".join(problems))
