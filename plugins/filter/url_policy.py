# -*- coding: utf-8 -*-
# Copyright: (c) 2026, inferops.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""URL settings of the roles that download packages or keys: plain http:// is accepted, never silently.

plain_http_warning is the sentence; url_errors validates a URL setting and shows that sentence as
an Ansible warning (deduplicated by Display: once per run however many hosts ask). The
package_repository filter uses the same functions for the repository and key URLs. Credentials in
a URL (user:password@) never appear in a message. Documentation: plain_http_warning.yml, url_errors.yml.
"""

from __future__ import annotations

import re

from ansible.utils.display import Display

_display = Display()
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")


def redact_url(value):
    """The URL without its user:password@ part (shown as ***@)."""
    return _USERINFO.sub(r"\1***@", str(value))


def plain_http_warning(value, variable):
    """The warning for a plain http:// URL in `variable` ('' for https://, file:// or empty)."""
    if str(value or "").strip().lower().startswith("http://"):
        return ("%s=%s is plain http://: anyone on the path can read and alter what is downloaded; prefer https://"
                % (variable, redact_url(str(value).strip())))
    return ""


def warn_plain_http(value, variable):
    """Show plain_http_warning as an Ansible [WARNING] when there is one."""
    message = plain_http_warning(value, variable)
    if message:
        _display.warning(message)
    return message


def url_errors(value, variable, schemes=("http", "https")):
    """[] for an empty value or a URL of one of `schemes` (warning on plain http://), else one message."""
    text = "" if value is None else str(value)
    if not text.strip():
        return []
    pattern = r"(?:%s)://[^\s/@]*@?[^\s/]+(?:/\S*)?" % "|".join(re.escape(scheme) for scheme in schemes)
    if not re.fullmatch(pattern, text, flags=re.IGNORECASE):
        allowed = " or ".join("%s://..." % scheme for scheme in schemes)
        return ["%s='%s' is not a URL: use %s" % (variable, redact_url(text), allowed)]
    warn_plain_http(text, variable)
    return []


class FilterModule:
    """inferops.gpu URL policy filters."""

    def filters(self):
        return {"plain_http_warning": plain_http_warning, "url_errors": url_errors}
