#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: check_mode
short_description: Tell whether the task runs in check mode, however check mode was asked for
version_added: 0.2.0
description:
  - Returns RV(check_mode), true when the task runs in check mode, whether from C(--check) or from a
    C(check_mode=true) keyword on the play, a block or the task.
  - C(ansible_check_mode) reflects C(--check) only; a play's C(check_mode) keyword leaves it false
    (ansible/ansible#61689), so a role that must know (to skip a wait for a service it only pretended to
    start) registers this task instead.
  - An action plugin; it runs on the controller and never contacts the managed host.
author:
  - inferops.gpu maintainers (@inferops)
options: {}
attributes:
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: It only reports; it runs the same in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
    details: Nothing is changed.
"""

EXAMPLES = r"""
- name: Check mode, from --check or a check_mode keyword
  inferops.gpu.check_mode:
  register: __myrole_check_mode_probe
  tags: [always]

# vars/main.yml of the role:
# __myrole_check_mode: "{{ __myrole_check_mode_probe.check_mode | default(ansible_check_mode) }}"
"""

RETURN = r"""
check_mode:
  description: Whether the task runs in check mode (C(--check) or a C(check_mode) keyword).
  returned: always
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    # Only reached when the action plugin is bypassed; the action plugin answers on the controller.
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    module.exit_json(changed=False, check_mode=module.check_mode)


if __name__ == "__main__":
    main()
