"""``{% load thinws %}{% thinws_script %}``: the script tag of the bundled JavaScript client.

    {% thinws_script %}
        <script src="/static/thinws_channels/thinws.js"></script>
    {% thinws_script module=True %}
        <script type="module" src="/static/thinws_channels/thinws.mjs"></script>

The URL comes from Django's ``static()``, so it follows ``STATIC_URL`` and, with
``django.contrib.staticfiles``, the storage's hashed names (ManifestStaticFilesStorage).
The classic script defines ``window.ThinWSClient``; the module exports ``ThinWSClient`` and
``ThinWSError`` for ``import`` (with ``module=True`` the tag only preloads it: import it from
your own module script with the same URL, see docs/client-js.md).
"""

from __future__ import annotations

from django import template
from django.templatetags.static import static
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

SCRIPT = "thinws_channels/thinws.js"
MODULE = "thinws_channels/thinws.mjs"


@register.simple_tag
def thinws_script(module: bool = False) -> SafeString:
    """The ``<script>`` tag that loads the ThinWS client (``module=True``: the ES module)."""
    if not isinstance(module, bool):
        raise template.TemplateSyntaxError(
            f"thinws_script: module must be True or False, got {module!r}"
        )
    if module:
        return format_html('<script type="module" src="{}"></script>', static(MODULE))
    return format_html('<script src="{}"></script>', static(SCRIPT))


@register.simple_tag
def thinws_script_url(module: bool = False) -> str:
    """Just the URL of the client (``module=True``: of the ES module), for an ``import``::

    import { ThinWSClient } from "{% thinws_script_url module=True %}";
    """
    return static(MODULE if module else SCRIPT)
