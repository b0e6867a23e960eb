"""Testinfra checks of the harness smoke scenario."""


def test_systemd_is_pid_1_and_running(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), state


def test_marker_file(host):
    marker = host.file("/etc/inferops-harness-smoke")
    assert marker.is_file
    assert marker.mode == 0o644
    assert marker.content_string.strip() == host.system_info.release.split(".")[0]


def test_package_installed_and_archive_kept(host):
    assert host.package("tree").is_installed
    # The image keeps downloaded packages, so the controller's shared cache fills up.
    assert host.run("ls /var/cache/apt/archives/tree_*.deb").rc == 0


def test_dbus_service(host):
    svc = host.service("dbus")
    assert svc.is_running
    assert svc.is_enabled
