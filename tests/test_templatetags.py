"""``{% load thinws %}``: the template tags that include the bundled JavaScript client."""

from __future__ import annotations

import pytest
from django.template import Context, Template, TemplateSyntaxError
from django.test import override_settings

from tests.js.make_module import STATIC


def render(source: str) -> str:
    return Template("{% load thinws %}" + source).render(Context({}))


def test_thinws_script_is_the_classic_script_tag():
    assert render("{% thinws_script %}") == (
        '<script src="/static/thinws_channels/thinws.js"></script>'
    )


def test_thinws_script_module_is_the_es_module():
    assert render("{% thinws_script module=True %}") == (
        '<script type="module" src="/static/thinws_channels/thinws.mjs"></script>'
    )
    assert render("{% thinws_script module=False %}") == render("{% thinws_script %}")


def test_thinws_script_url_for_imports():
    assert render("{% thinws_script_url %}") == "/static/thinws_channels/thinws.js"
    assert render("{% thinws_script_url module=True %}") == "/static/thinws_channels/thinws.mjs"


@override_settings(STATIC_URL="https://cdn.example.com/assets/")
def test_the_url_follows_static_url_and_is_escaped():
    assert render("{% thinws_script %}") == (
        '<script src="https://cdn.example.com/assets/thinws_channels/thinws.js"></script>'
    )
    with override_settings(STATIC_URL="/st&at/"):
        assert render("{% thinws_script %}") == (
            '<script src="/st&amp;at/thinws_channels/thinws.js"></script>'
        )


def test_a_bad_module_argument_names_the_value():
    with pytest.raises(TemplateSyntaxError, match=r"module must be True or False, got 'yes'"):
        render('{% thinws_script module="yes" %}')


def test_the_files_the_tags_point_to_exist():
    for name in ("thinws.js", "thinws.mjs", "thinws.d.ts"):
        assert (STATIC / name).is_file(), name
