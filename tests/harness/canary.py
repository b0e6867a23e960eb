"""Canary secrets (issue 11): find known secret values wherever they must not be.

A canary is a secret value a test feeds in (or reads back from the 0600 file the role keeps it in),
known by its kind: {"admin-password": "CANARY-admin-password-...", ...}. The scanner looks for each
value as it is and in base64 (what Docker's config.json and HTTP basic auth hold), and reports
every hit with where it was, the kind, and an excerpt in which the value itself is replaced by
<kind>, so a failure message never repeats the secret (and a log search for the canaries stays
meaningful afterwards).

HOST_SCAN is a self-contained script for a test host (python3 only): it lists the files of the
host holding a canary (find + grep -F, one pass), says for each whether a user other than its
owner and group can read it (the file o+r and every directory above it o+x), and adds the
journal (all fields) and every process's command line.
"""

import base64
import inspect
import json
import os
from pathlib import Path
from typing import NamedTuple

# Canary values a scenario writes into its inventory start with this (molecule.yml); a Molecule
# log in which it appears has leaked one (tests/integration/test_molecule.py).
PREFIX = "CANARY-"
EXCERPT = 60


class Hit(NamedTuple):
    where: str
    kind: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: ...{self.excerpt}..."


def forms(value: str) -> list[bytes]:
    """The byte strings that reveal `value`: itself, and its base64 encoding at each of the three
    alignments it can take inside a longer encoded string (user:password in an auth entry)."""
    raw = value.encode()
    found = [raw]
    for start in range(3):
        chunk = raw[start:start + 3 * ((len(raw) - start) // 3)]
        if len(chunk) >= 12:
            found.append(base64.b64encode(chunk))
    return found


def find(data: bytes, canaries: dict, where: str, limit: int = 5) -> list:
    """Where each canary is in `data` (up to `limit` places per kind, `where:<line>`), the value
    masked in the excerpt."""
    hits = []
    for kind, value in canaries.items():
        places = []
        for form in forms(value):
            at = data.find(form)
            while at >= 0 and len(places) < limit:
                places.append((at, form))
                at = data.find(form, at + len(form))
        for at, form in sorted(places)[:limit]:
            around = data[max(0, at - EXCERPT):at + len(form) + EXCERPT].replace(form, f"<{kind}>".encode())
            hits.append(Hit("%s:%d" % (where, data.count(b"\n", 0, at) + 1), kind,
                            mask(around.decode("utf-8", "replace"), canaries).replace("\n", "\\n")))
    return hits


def mask(text: str, canaries: dict) -> str:
    """`text` with every canary value replaced by <kind>."""
    for kind, value in canaries.items():
        text = text.replace(value, f"<{kind}>")
    return text


def scan_paths(paths, canaries: dict, exclude=()) -> list:
    """Every hit in the regular files under `paths` (files or directories; a missing one is
    skipped), except those under an `exclude` path. Symbolic links are not followed."""
    skip = [Path(p).resolve() for p in exclude]
    hits = []
    for top in paths:
        top = Path(top)
        if not top.exists():
            continue
        # os.walk, not rglob: it skips a directory that vanishes while it walks (Ansible's temp
        # directories of a scenario running beside this one come and go under ~/.ansible).
        files = [top] if top.is_file() else sorted(
            Path(where, name) for where, _dirs, names in os.walk(top) for name in names
            if os.path.isfile(os.path.join(where, name)) and not os.path.islink(os.path.join(where, name)))
        for path in files:
            real = path.resolve()
            if any(real == s or s in real.parents for s in skip):
                continue
            try:
                data = real.read_bytes()
            except OSError:
                continue
            hits.extend(find(data, canaries, str(path)))
    return hits


# Runs on a test host: python3 -c HOST_SCAN '<json {"canaries": {...}, "prune": [...], "root": "/"}>'.
# Prints one JSON object: files (path, mode, owner, others_can_read, kinds, excerpts), journal and
# cmdline hits. Only the standard library: the hosts have python3 and nothing else.
# forms() is the controller's own, copied in as source.
HOST_SCAN = "import base64, json, os, stat, subprocess, sys\n" + inspect.getsource(forms) + r'''
args = json.loads(sys.argv[1])
canaries, prune, root = args["canaries"], args["prune"], args.get("root", "/")

def find(data):
    kinds = {}
    for kind, value in canaries.items():
        for form in forms(value):
            at = data.find(form)
            if at >= 0:
                around = data[max(0, at - 60):at + len(form) + 60].replace(form, ("<%s>" % kind).encode())
                text = around.decode("utf-8", "replace")
                for k, v in canaries.items():
                    text = text.replace(v, "<%s>" % k)
                kinds[kind] = text.replace("\n", "\\n")
                break
    return kinds

def others_can_read(path):
    st = os.stat(path)
    if not st.st_mode & stat.S_IROTH:
        return False
    parent = os.path.dirname(path)
    while True:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
        if parent == "/":
            return True
        parent = os.path.dirname(parent)

patterns = sorted(set(f.decode() for v in canaries.values() for f in forms(v)))
cmd = ["find", root]
for p in prune:
    cmd += ["-path", p, "-prune", "-o"]
cmd += ["-type", "f", "-print0"]
listed = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
grep = ["xargs", "-0", "-r", "grep", "-l", "-Z", "-s", "-F"]
for p in patterns:
    grep += ["-e", p]
matched = subprocess.run(grep, input=listed, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
files = []
for path in sorted(set(p.decode("utf-8", "surrogateescape") for p in matched.split(b"\0") if p)):
    try:
        with open(path, "rb") as stream:
            kinds = find(stream.read())
        st = os.lstat(path)
        files.append({"path": path, "mode": "%04o" % stat.S_IMODE(st.st_mode), "owner": "%d:%d" % (st.st_uid, st.st_gid),
                      "others_can_read": others_can_read(path), "kinds": kinds})
    except OSError:
        continue
try:
    journal = subprocess.run(["journalctl", "--no-pager", "-o", "json"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL).stdout
except OSError:  # no systemd (the unit test's machine)
    journal = b""
# This scan and the shell that started it carry the canaries in their own command lines.
own, pid = set(), os.getpid()
while pid > 1:
    own.add(str(pid))
    with open("/proc/%d/stat" % pid) as stream:
        pid = int(stream.read().rsplit(")", 1)[1].split()[1])
cmdlines = {}
for pid in os.listdir("/proc"):
    if pid.isdigit() and pid not in own:
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as stream:
                found = find(stream.read().replace(b"\0", b" "))
        except OSError:
            continue
        if found:
            cmdlines[pid] = found
print(json.dumps({"files": files, "journal": find(journal), "journal_bytes": len(journal), "cmdlines": cmdlines,
                  "scanned_files": listed.count(b"\0")}))
'''


def host_hits(name: str, result: dict) -> tuple:
    """(leaks, kept): hits a user other than root could read (world-readable files, the journal,
    command lines) and hits in files only their owner and group can read."""
    leaks, kept = [], []
    for entry in result["files"]:
        where = "%s:%s (mode %s, owner %s)" % (name, entry["path"], entry["mode"], entry["owner"])
        for kind, excerpt in entry["kinds"].items():
            (leaks if entry["others_can_read"] else kept).append(Hit(where, kind, excerpt))
    leaks += [Hit("%s: journal" % name, kind, excerpt) for kind, excerpt in result["journal"].items()]
    for pid, kinds in result["cmdlines"].items():
        leaks += [Hit("%s: /proc/%s/cmdline" % (name, pid), kind, excerpt) for kind, excerpt in kinds.items()]
    return leaks, kept


def report(hits) -> str:
    return "\n".join(str(h) for h in hits)


def dump(path, data) -> None:
    """Write a JSON summary (kinds and places only, values masked by construction)."""
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.chmod(path, 0o644)
