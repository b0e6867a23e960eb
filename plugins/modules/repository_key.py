#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: repository_key
short_description: Download a package repository's signing key, check its pinned fingerprint, then write it
version_added: 0.2.0
description:
  - Downloads the OpenPGP public key at O(url) on the managed host, computes the fingerprint of every primary
    key in it (without gpg) and writes it to O(dest), ASCII-armored, only when every one of them is in
    O(fingerprints). A key file with any other primary key is refused and nothing is written, so apt
    (C(Signed-By)) or rpm never trust a key that was swapped on the way or on a mirror.
  - The failure names both fingerprints and O(variable), the setting that pins another key (a mirror that signs
    with its own).
  - Used by the internal role C(inferops.gpu.package_repository) before it writes a repository.
author:
  - inferops.gpu maintainers (@inferops)
options:
  url:
    description: The key's URL, C(https://), C(http://) or C(file://).
    type: str
    required: true
  dest:
    description: Where the verified key is written (mode O(mode), owner root).
    type: path
    required: true
  fingerprints:
    description: The allowed primary-key fingerprints (40 hexadecimal digits for v4 keys; spaces are ignored).
    type: list
    elements: str
    required: true
  variable:
    description: The setting that holds O(fingerprints), named in the failure message.
    type: str
    default: fingerprints
  mode:
    description: The file mode of O(dest).
    type: raw
    default: "0644"
  timeout:
    description: Seconds to wait for the download.
    type: int
    default: 30
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The key is downloaded and checked in check mode too; only the write is skipped.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The armored key before and after (public data).
"""

EXAMPLES = r"""
- name: NVIDIA's CUDA repository key, verified before apt sees it
  inferops.gpu.repository_key:
    url: https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/3bf863cc.pub
    dest: /etc/apt/keyrings/nvidia-cuda.asc
    fingerprints: [EB693B3035CD5710E231E123A4B469963BF863CC]
    variable: package_repository_cuda_key_fingerprint
"""

RETURN = r"""
fingerprints:
  description: The primary-key fingerprints found in the downloaded key file.
  returned: success
  type: list
  elements: str
  sample: [EB693B3035CD5710E231E123A4B469963BF863CC]
dest:
  description: The key file.
  returned: always
  type: str
  sample: /etc/apt/keyrings/nvidia-cuda.asc
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.six.moves.urllib.parse import urlparse
from ansible.module_utils.urls import fetch_url

from ansible_collections.inferops.gpu.plugins.module_utils.openpgp import OpenPGPError, armor, dearmor, verify


def _download(module, url):
    parsed = urlparse(url)
    if parsed.scheme == "file":
        try:
            with open(parsed.path, "rb") as handle:
                return handle.read()
        except (IOError, OSError) as exc:
            module.fail_json(msg="Could not read the repository key %s: %s" % (url, to_native(exc)))
    if parsed.scheme not in ("http", "https"):
        module.fail_json(msg="The repository key URL must be https://, http:// or file://, got %s" % url)
    response, info = fetch_url(module, url, timeout=module.params["timeout"])
    if response is None or info.get("status") != 200:
        module.fail_json(msg="Could not download the repository key %s: HTTP %s %s"
                         % (url, info.get("status"), info.get("msg", "")))
    return response.read()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            dest=dict(type="path", required=True),
            fingerprints=dict(type="list", elements="str", required=True),
            variable=dict(type="str", default="fingerprints"),
            mode=dict(type="raw", default="0644"),
            timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    url, dest = module.params["url"], module.params["dest"]
    data = _download(module, url)
    try:
        found = verify(data, module.params["fingerprints"], variable=module.params["variable"],
                       source="The key at %s" % url)
        # One form on disk whatever the mirror serves: armored, which apt reads from a .asc file.
        content = data if b"-----BEGIN PGP PUBLIC KEY BLOCK-----" in data else armor(dearmor(data)).encode("ascii")
    except OpenPGPError as exc:
        module.fail_json(msg=to_native(exc), dest=dest)

    before = b""
    if os.path.exists(dest):
        with open(dest, "rb") as handle:
            before = handle.read()
    changed = before != content
    result = dict(changed=changed, dest=dest, fingerprints=found)
    if module._diff:
        result["diff"] = dict(before_header=dest, after_header=dest,
                              before=before.decode("ascii", "replace"), after=content.decode("ascii", "replace"))
    if changed and not module.check_mode:
        directory = os.path.dirname(dest)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        handle, path = tempfile.mkstemp(dir=module.tmpdir)
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        module.atomic_move(path, dest)
    if os.path.exists(dest) or not module.check_mode:
        file_args = module.load_file_common_arguments(dict(path=dest, mode=module.params["mode"],
                                                           owner="root", group="root"))
        result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
