"""The canary scanner of the cluster scenario (tests/harness/canary.py) is not blind: it finds each
canary as it is and base64-encoded, masks it in what it reports, honours exclusions, and its host
script tells a file others can read from one they cannot, and finds command lines."""

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

import canary  # noqa: E402

CANARIES = {"admin-password": "CANARY-admin-password-0a1b2c3d4e",
            "api-key": "sk-5f2e9a7c1d3b4e6f8a0b2c4d6e8f0a1b"}


def test_finds_the_value_and_masks_it_in_the_excerpt():
    data = b'{"password": "CANARY-admin-password-0a1b2c3d4e", "x": 1}'
    hits = canary.find(data, CANARIES, "log")
    assert [(h.where, h.kind) for h in hits] == [("log:1", "admin-password")]
    assert "CANARY-admin-password-0a1b2c3d4e" not in str(hits[0])
    assert '"password": "<admin-password>"' in hits[0].excerpt


def test_finds_the_value_base64_encoded_at_every_alignment():
    value = CANARIES["api-key"]
    for prefix in ("", "u:", "us:", "use:", "user:"):
        encoded = base64.b64encode((prefix + value).encode())
        data = b'{"auths": {"localhost:5000": {"auth": "' + encoded + b'"}}}'
        assert [h.kind for h in canary.find(data, CANARIES, "config.json")] == ["api-key"], prefix


def test_every_place_by_line_up_to_the_limit():
    data = b"a\nCANARY-admin-password-0a1b2c3d4e\nb\nx CANARY-admin-password-0a1b2c3d4e\n" * 3
    hits = canary.find(data, CANARIES, "log")
    assert [h.where for h in hits] == ["log:2", "log:4", "log:6", "log:8", "log:10"]
    assert len(canary.find(data, CANARIES, "log", limit=100)) == 6


def test_clean_data_gives_no_hit():
    assert canary.find(b"CANARY-admin-password-0a1b2c3d4 (one character short)", CANARIES, "x") == []
    assert canary.find(b"", CANARIES, "x") == []


def test_scan_paths_walks_trees_and_skips_exclusions(tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "drift.md").write_text("token: CANARY-admin-password-0a1b2c3d4e\n")
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "all.yml").write_text("pw: CANARY-admin-password-0a1b2c3d4e\n")
    (tmp_path / "clean.json").write_text("{}")
    hits = canary.scan_paths([tmp_path, tmp_path / "missing"], CANARIES, exclude=[tmp_path / "inventory"])
    assert [(Path(h.where).name, h.kind) for h in hits] == [("drift.md:1", "admin-password")]
    assert len(canary.scan_paths([tmp_path / "inventory" / "all.yml"], CANARIES)) == 1


def test_host_script_tells_readable_from_kept_files_and_finds_command_lines():
    # Not pytest's tmp_path: its parent is 0700, so nothing under it is readable by others.
    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        os.chmod(top, 0o755)
        host_script_case(Path(top))


def host_script_case(tmp_path):
    value = CANARIES["admin-password"]
    (tmp_path / "etc").mkdir(mode=0o755)
    (tmp_path / "etc" / "leak.conf").write_text("PASSWORD=%s\n" % value)
    os.chmod(tmp_path / "etc" / "leak.conf", 0o644)
    (tmp_path / "etc" / "key").write_text(CANARIES["api-key"])
    os.chmod(tmp_path / "etc" / "key", 0o600)
    (tmp_path / "private").mkdir()
    os.chmod(tmp_path / "private", 0o700)
    (tmp_path / "private" / "readable-but-closed").write_text(value)
    os.chmod(tmp_path / "private" / "readable-but-closed", 0o644)
    (tmp_path / "layers").mkdir()
    (tmp_path / "layers" / "pruned").write_text(value)
    os.chmod(tmp_path, 0o755)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", value])  # pylint: disable=consider-using-with
    try:
        time.sleep(0.2)
        args = {"canaries": CANARIES, "prune": [str(tmp_path / "layers")], "root": str(tmp_path)}
        out = subprocess.run([sys.executable, "-c", canary.HOST_SCAN, json.dumps(args)],
                             capture_output=True, text=True, check=True).stdout
    finally:
        sleeper.kill()
        sleeper.wait()
    result = json.loads(out)
    files = {Path(f["path"]).relative_to(tmp_path).as_posix(): f for f in result["files"]}
    assert sorted(files) == ["etc/key", "etc/leak.conf", "private/readable-but-closed"]
    assert files["etc/leak.conf"]["others_can_read"] and files["etc/leak.conf"]["mode"] == "0644"
    assert not files["etc/key"]["others_can_read"]
    assert not files["private/readable-but-closed"]["others_can_read"]
    assert str(sleeper.pid) in result["cmdlines"]
    leaks, kept = canary.host_hits("h", result)
    assert sorted((h.where, h.kind) for h in leaks) == sorted([
        ("h:%s/etc/leak.conf (mode 0644, owner %d:%d)" % (tmp_path, os.getuid(), os.getgid()), "admin-password"),
        ("h: /proc/%d/cmdline" % sleeper.pid, "admin-password")])
    assert {h.kind for h in kept} == {"admin-password", "api-key"}
    assert all(value not in str(h) and CANARIES["api-key"] not in str(h) for h in leaks + kept)
