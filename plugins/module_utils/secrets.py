# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Masking of secret values in what the collection shows or writes: the one home of the rule.

Used by the drift_report callback (drift.json, drift.md, its warnings), the masked_secrets filter
(the xinference role's masked container diff) and the xinference_model module (secret-looking
envs). Pure Python, no Ansible import.

A name looks secret when one of its words (split at _ - . space and camelCase) is token, password,
passwd, pass, pwd, secret, key, apikey, credential(s), auth, authorization, cookie or session (not
tokens: max_tokens is a number), and
its last word does not say it is something else: a path, a file, a name, a URL, a flag, a method...
(api_key_path, auth_enabled, key_url are information, not secrets). Values masked:
- the value of such a key in a dict (recursively; booleans, numbers and None stay, they carry no
  secret and are drift information);
- NAME=VALUE and NAME: VALUE in text where NAME looks secret (env lists, diff lines, JSON text);
- the password of a URL (scheme://user:password@host) and Authorization headers (Bearer, Basic).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MASK = "********"

SECRET_WORDS = frozenset((
    "token", "password", "passwords", "passwd", "pass", "pwd", "passphrase", "secret", "secrets",
    "key", "apikey", "credential", "credentials", "auth", "authorization", "cookie", "session",
))
# A last word that names what the value is when it is not the secret itself.
NOT_SECRET_LAST_WORDS = frozenset((
    "path", "paths", "file", "files", "dir", "directory", "name", "names", "url", "urls", "uri", "endpoint",
    "enabled", "disabled", "required", "method", "methods", "mode", "type", "id", "ids", "fingerprint",
    "fingerprints", "length", "size", "ring", "keyring", "server", "servers", "host", "hosts", "port", "user",
    "username", "owner", "group", "expiry", "expires", "ttl", "algorithm", "format", "header", "policy",
    "description",
))

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+")
# NAME=VALUE or "NAME": "VALUE" in text. NAME: letters, digits, _ - . (an env name, a YAML/JSON key).
_ASSIGNMENT = re.compile(
    r"""(?P<lead>(?<![\w./~-])(?P<quote>["']?)(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)(?P=quote)[ \t]*(?P<sep>=|:)[ \t]*)"""
    r"""(?:"(?P<dq>[^"\n]*)"|'(?P<sq>[^'\n]*)'|(?P<value>[^\s"',;}\]]+"""
    # A bare value goes on over spaces (a passphrase) up to the next NAME=/NAME: or a delimiter.
    r"""(?:[ \t]+[^\s"',;}\]=:]+(?=[\s"',;}\]]|$))*))""", re.MULTILINE)
# scheme://user:password@host, the password part.
_URL_USERINFO = re.compile(r"(?P<lead>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@\"']*:)(?P<password>[^\s@/\"']+)(?=@)")
_AUTH_HEADER = re.compile(r"(?P<lead>\b(?:Bearer|Basic|Token)[ \t]+)(?P<value>[A-Za-z0-9._~+/=-]{4,})", re.IGNORECASE)
# Values of a secret-looking name in text that are not secrets (booleans, nothing).
_PLAIN_VALUES = frozenset(("true", "false", "yes", "no", "on", "off", "null", "none", "omit", MASK.lower()))


def _words(name):
    return [word.lower() for word in _WORD_SPLIT.split(_CAMEL.sub("_", str(name))) if word]


def is_secret_name(name):
    """True when a variable, option, key or environment name looks like it holds a secret."""
    words = _words(name)
    if not words or words[-1] in NOT_SECRET_LAST_WORDS:
        return False
    return any(word in SECRET_WORDS for word in words)


def _mask_assignment(match):
    for quote, group in (('"', "dq"), ("'", "sq"), ("", "value")):
        value = match.group(group)
        if value is not None:
            break
    if group == "value" and match.group("sep") == ":" and value.startswith("//"):
        return match.group(0)  # scheme://..., the URL rule handles it
    if not is_secret_name(match.group("name")) or value.lower() in _PLAIN_VALUES or value == "":
        return match.group(0)
    return match.group("lead") + quote + MASK + quote


def mask_text(text):
    """text with the values of secret-looking NAME=VALUE / NAME: VALUE pairs, URL passwords and
    Authorization header values replaced by ********."""
    text = _URL_USERINFO.sub(lambda match: match.group("lead") + MASK, str(text))
    text = _AUTH_HEADER.sub(lambda match: match.group("lead") + MASK, text)
    return _ASSIGNMENT.sub(_mask_assignment, text)


def _mask_all(value):
    if isinstance(value, Mapping):
        return dict((key, _mask_all(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [_mask_all(item) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return MASK if str(value) else value


def masked(value, secret=False):
    """A copy of value (any structure of dicts, lists and scalars) with every secret masked: the
    values under secret-looking keys, and secrets inside strings (mask_text). Non-secret data,
    booleans and numbers are kept as they are."""
    if secret:
        return _mask_all(value)
    if isinstance(value, Mapping):
        return dict((key, masked(item, secret=isinstance(key, str) and is_secret_name(key)))
                    for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [masked(item) for item in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def secret_values(mapping):
    """The non-empty string values of the secret-looking keys of a flat dict (for no_log_values)."""
    return set(str(value) for key, value in (mapping or {}).items()
               if is_secret_name(key) and value is not None and not isinstance(value, bool) and str(value) != "")


def masked_strings(value):
    """A copy of value with mask_text applied to every string, keys left alone: for data whose keys
    are not variable names (a report keyed by host names)."""
    if isinstance(value, Mapping):
        return dict((key, masked_strings(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [masked_strings(item) for item in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def plain_values(mapping):
    """The values of the other keys of a flat dict, as Ansible lists no_log values (strings, numbers
    as text; booleans and None are never hidden)."""
    return set(str(value) for key, value in (mapping or {}).items()
               if not is_secret_name(key) and value is not None and not isinstance(value, bool) and str(value) != "")


def url_password(url):
    """The password of a URL's userinfo (scheme://user:password@host), '' when it has none: a
    module adds it to its no_log values, so its URL option stays readable and the password does not."""
    match = _URL_USERINFO.search(str(url or ""))
    return match.group("password") if match else ""


def hide_url_password(module, option="url"):
    """Adds the password of the module's URL option to its no_log values (see url_password)."""
    password = url_password(module.params.get(option))
    if password:
        module.no_log_values.add(password)
