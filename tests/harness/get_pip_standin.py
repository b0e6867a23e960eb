"""Stand-in for the get-pip script ansible-test downloads (no route to its host here).

ansible-test runs this file as __main__ inside each virtualenv it builds, with pip's command
line arguments (e.g. `pip==24.2 setuptools==... --no-setuptools --no-wheel`). It bootstraps
pip from the interpreter's own ensurepip, then installs what was asked for. ansible-test hides
pip's configuration (PIP_CONFIG_FILE=/dev/null), so the system CA bundle is named explicitly.
Installed by tests/static/test_sanity.py at ~/.ansible/test/cache/get_pip_<version>.py.
"""

import ensurepip
import os
import subprocess
import sys

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
cmd = [sys.executable, "-m", "pip", "install", "--upgrade"]
if os.path.exists(CA_BUNDLE):
    cmd += ["--cert", CA_BUNDLE]
sys.exit(subprocess.call(cmd + args))
