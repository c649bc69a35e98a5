"""The portal's Jinja shortcuts render exactly what stock Jinja renders."""

from __future__ import annotations

import pytest
from jinja2 import DictLoader, Environment, StrictUndefined

from portal import i18n
from portal.app import PortalEnvironment

TEMPLATES = {
    "rows.html": (
        "{{ d.code }}|{{ d.missing }}|{{ d.get('items') }}|{{ d['items'] }}|"
        "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{{ d.keys()|list|length }}|"
        "{{ obj.real }}|{{ d.nested.name }}"
    ),
    "gettext.html": (
        "{{ _('Hồ sơ %(code)s', code=d.code) }}|{{ _('100%% miễn phí') }}|"
        "{{ _('Bỏ qua, đến nội dung chính') }}|{{ _('Lý do: %(r)s', r='<b>x</b> & y') }}"
    ),
}
CONTEXT = {"d": {"code": "000.00.01.H56-250107-0001", "items": ["<a>", "b"],
                 "nested": {"name": "Sở Tư pháp"}}, "obj": 3}


def stock() -> Environment:
    env = Environment(loader=DictLoader(TEMPLATES), autoescape=True)
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_translations(i18n.RequestTranslations(), newstyle=True)
    return env


def portal() -> Environment:
    env = PortalEnvironment(loader=DictLoader(TEMPLATES), autoescape=True)
    i18n.install(env)
    return env


@pytest.mark.parametrize("lang", ["vi", "en"])
@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_same_output_as_stock_jinja(name, lang):
    with i18n.language(lang):
        expected = stock().get_template(name).render(CONTEXT)
        assert portal().get_template(name).render(CONTEXT) == expected
    assert expected  # rendered something


def test_dict_methods_stay_methods_and_items_are_escaped():
    with i18n.language("vi"):
        out = portal().get_template("rows.html").render(CONTEXT)
    assert out.startswith("000.00.01.H56-250107-0001||")  # a missing key is undefined (empty)
    assert "[&#39;&lt;a&gt;&#39;, &#39;b&#39;]" in out  # d['items'] and d.get('items')
    assert "code=000.00.01.H56-250107-0001;" in out  # d.items() is still the method
    assert out.endswith("|3|3|Sở Tư pháp")


def test_translated_text_with_escaped_variables():
    with i18n.language("vi"):
        out = portal().get_template("gettext.html").render(CONTEXT)
    assert "100% miễn phí" in out  # always %-formatted, as Jinja's newstyle gettext
    assert "Lý do: &lt;b&gt;x&lt;/b&gt; &amp; y" in out
    with i18n.language("en"):
        assert "Skip to main content" in portal().get_template("gettext.html").render(CONTEXT)


def test_undefined_policy_is_kept():
    env = PortalEnvironment(loader=DictLoader({"t": "{{ d.nope }}"}), undefined=StrictUndefined)
    with pytest.raises(Exception, match="nope"):
        env.get_template("t").render(d={})


def test_a_web_worker_compiles_every_template_before_it_listens(tmp_path):
    from portal.app import TEMPLATES as TEMPLATE_DIR
    from portal.app import create_app
    from portal.cli import warm_up
    from portal.settings import Settings

    app = create_app(Settings(var_dir=tmp_path / "var", secret_key="t"), background=False)
    env = app.template_engine.engine
    names = sorted(p.relative_to(TEMPLATE_DIR).as_posix() for p in TEMPLATE_DIR.rglob("*.html"))
    assert len(names) > 20
    warm_up(app)
    kept = {key[1] for key in env.cache} if env.cache is not None else set()
    assert set(names) <= kept
