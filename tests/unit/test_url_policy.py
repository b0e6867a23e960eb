"""plugins/filter/url_policy.py: plain http:// URL settings are accepted, never silently; bad URLs are refused.

The warning goes through Ansible's Display (a [WARNING] line, once per run); credentials in a URL
never appear in a message. The package_repository filter warns through the same function.
"""

import os

import pytest
import yaml

from ansible_collections.inferops.gpu.plugins.filter import package_repository, url_policy

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def warnings(monkeypatch):
    seen = []
    monkeypatch.setattr(url_policy._display, "warning", lambda message, *args, **kwargs: seen.append(message))
    return seen


def test_plain_http_is_named_https_and_file_are_not():
    message = url_policy.plain_http_warning("http://mirror.internal/cuda", "package_repository_cuda_url")
    assert message.startswith("package_repository_cuda_url=http://mirror.internal/cuda is plain http://")
    assert url_policy.plain_http_warning("HTTP://mirror.internal/", "x")
    for value in ("https://mirror.internal/", "file:///srv/mirror", "", None):
        assert url_policy.plain_http_warning(value, "x") == ""


def test_credentials_never_appear(warnings):
    message = url_policy.plain_http_warning("http://ci:s3cret-canary@pypi.internal/simple", "xinference_pip_index_url")
    assert "s3cret-canary" not in message and "http://***@pypi.internal/simple" in message
    errors = url_policy.url_errors("pypi.internal:s3cret-canary@ simple", "xinference_pip_index_url")
    assert errors and "xinference_pip_index_url" in errors[0]
    url_policy.url_errors("http://ci:s3cret-canary@pypi.internal/simple", "xinference_pip_index_url")
    assert warnings and not any("s3cret-canary" in item for item in warnings)


def test_url_errors_validates_and_warns(warnings):
    assert url_policy.url_errors("", "xinference_pip_index_url") == []
    assert url_policy.url_errors("https://pypi.internal/simple", "xinference_pip_index_url") == []
    assert warnings == []
    assert url_policy.url_errors("http://pypi.internal/simple", "xinference_pip_index_url") == []
    assert warnings == [url_policy.plain_http_warning("http://pypi.internal/simple", "xinference_pip_index_url")]
    for bad in ("pypi.internal/simple", "ftp://pypi.internal/", "https://pypi.internal/simple\n", "https://"):
        errors = url_policy.url_errors(bad, "xinference_pip_index_url")
        assert len(errors) == 1 and errors[0].startswith("xinference_pip_index_url=") and "https://" in errors[0], bad


def test_package_repository_urls_warn_through_the_same_rule(warnings):
    facts = {"distribution": "Debian", "os_family": "Debian", "distribution_major_version": "12",
             "distribution_release": "bookworm", "architecture": "x86_64"}
    package_repository.package_repository(facts, "docker", url="https://download.internal/docker")
    assert warnings == []
    package_repository.package_repository(facts, "docker", url="http://download.internal/docker",
                                          key_url="http://keys.internal/docker.gpg")
    assert [item.split(" ")[0] for item in warnings] == [
        "package_repository_docker_url=http://download.internal/docker",
        "package_repository_docker_key_url=http://keys.internal/docker.gpg"]


def test_registered_and_documented():
    assert set(url_policy.FilterModule().filters()) == {"plain_http_warning", "url_errors"}
    for name in ("plain_http_warning", "url_errors"):
        with open(os.path.join(REPO, "plugins", "filter", name + ".yml")) as handle:
            assert yaml.safe_load(handle)["DOCUMENTATION"]["name"] == name
