"""Languages of the portal: Vietnamese is the source text, English comes from a gettext catalog.

Catalogs are kept as `.po` text only (`portal/locale/<lang>/LC_MESSAGES/messages.po`) and compiled
in memory with Babel the first time a language is used: one reviewable source of truth, no binary
`.mo` file that can drift from it, nothing to run at install time. The language of a request lives
in a context variable set by the language middleware, so one Jinja environment serves every
language concurrently (`install_gettext_translations` gets a proxy that reads that variable).

`python -m portal.i18n extract` refreshes the English catalog from the templates and Python code,
keeping existing translations; a test fails when a message has no English translation.
"""

from __future__ import annotations

import gettext as _gettext
import io
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from functools import cache
from pathlib import Path
from typing import Any

from markupsafe import Markup

LANGUAGES = {"vi": "Tiếng Việt", "en": "English"}
DEFAULT_LANGUAGE = "vi"
COOKIE = "lang"
LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"

_current: ContextVar[str] = ContextVar("portal_language", default=DEFAULT_LANGUAGE)


def N_(message: str) -> str:
    """Mark a message for extraction without translating it now (labels, constants)."""
    return message


def catalog_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(lang: str) -> _gettext.NullTranslations:
    """The compiled catalog of a language; Vietnamese (the source text) needs none."""
    path = catalog_path(lang)
    if lang == DEFAULT_LANGUAGE or not path.exists():
        return _gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with path.open("rb") as f:
        catalog = read_po(f, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return _gettext.GNUTranslations(buffer)


def pick(*candidates: str | None) -> str:
    """The first supported language among the candidates (query, cookie), else Vietnamese."""
    for c in candidates:
        if c and c.strip().lower()[:2] in LANGUAGES:
            return c.strip().lower()[:2]
    return DEFAULT_LANGUAGE


def current() -> str:
    return _current.get()


def activate(lang: str) -> Token[str]:
    return _current.set(lang if lang in LANGUAGES else DEFAULT_LANGUAGE)


def deactivate(token: Token[str]) -> None:
    _current.reset(token)


@contextmanager
def language(lang: str) -> Iterator[None]:
    token = activate(lang)
    try:
        yield
    finally:
        deactivate(token)


def gettext(message: str) -> str:
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).ngettext(singular, plural, n)


_ = gettext


class RequestTranslations:
    """What Jinja's i18n extension calls: translations of the current request's language."""

    def gettext(self, message: str) -> str:
        return gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return ngettext(singular, plural, n)

    def pgettext(self, context: str, message: str) -> str:
        return translations(_current.get()).pgettext(context, message)

    def npgettext(self, context: str, singular: str, plural: str, n: int) -> str:
        return translations(_current.get()).npgettext(context, singular, plural, n)


def template_gettext(message: str, **variables: Any) -> Markup:
    """`_()` in the (autoescaped) templates: what jinja2.ext.i18n's newstyle `_` does there
    (translate, mark safe, always %-format with the variables escaped), without the three
    context-passing calls it makes per use (a fifth of the CPU of rendering a page)."""
    # Trusted: the message is a template's literal and its translation our own catalogue;
    # the variables are escaped by the % of Markup.
    return Markup(translations(_current.get()).gettext(message)) % variables  # noqa: S704


_LANG_VI = Markup(' lang="vi"')


def data_lang() -> Markup:
    """` lang="vi"` on an element holding Vietnamese data (a procedure's name and steps, an
    officer's reason...) when the page is in another language, so that a screen reader reads it
    with a Vietnamese voice (WCAG 3.1.2); nothing on a Vietnamese page."""
    return Markup("") if _current.get() == "vi" else _LANG_VI


def install(env: Any) -> None:
    """Add the i18n extension to a Jinja environment, bound to the request's language."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_translations(RequestTranslations(), newstyle=True)
    if env.autoescape is True:
        env.globals["_"] = template_gettext
    env.globals["current_language"] = current
    env.globals["vi"] = data_lang
    # Translate a text that comes from data (labels, formulas): no %-formatting, unlike `_`.
    env.globals["tr"] = gettext
    env.globals["LANGUAGES"] = LANGUAGES


# extraction ---------------------------------------------------------------------------------
def extract_messages(root: Path) -> list[tuple[str, list[tuple[str, int]]]]:
    """Every translatable message of the templates and the portal's Python code."""
    from babel.messages.extract import extract_from_dir

    found: dict[str, list[tuple[str, int]]] = {}
    sources = [
        (root / "templates", [("**.html", "jinja2.ext:babel_extract")],
         {"**.html": {"extensions": "jinja2.ext.i18n", "newstyle_gettext": "true"}}),
        (root / "portal", [("**.py", "python")], {}),
    ]
    for folder, method_map, options in sources:
        for filename, lineno, message, _comments, _context in extract_from_dir(
                str(folder), method_map=method_map, options_map=options):
            msgid = message if isinstance(message, str) else message[0]
            if msgid:
                found.setdefault(msgid, []).append((f"{folder.name}/{filename}", lineno))
    for msgid in data_messages():
        found.setdefault(msgid, []).append(("projections/index766.py", 0))
    return sorted(found.items())


def data_messages() -> list[str]:
    """Vietnamese texts defined as data outside the portal and shown on pages (766 indicators,
    why a transparency proof cannot be made)."""
    try:
        from projections import index766, transparency
    except ImportError:
        return []
    texts = [name for name, _max in index766.GROUPS.values()]
    texts += [name for _floor, _key, name in index766.BANDS]
    for ind in index766.INDICATORS:
        texts += [ind.name_vi, ind.formula_vi,
                  ind.formula_vi + ". Không phát sinh trong kỳ: tính đủ điểm"]
    return texts + list(transparency.PROOF_REASONS)


def update_catalog(root: Path, lang: str = "en") -> tuple[int, list[str]]:
    """Rewrite `lang`'s catalog with the current messages; returns (count, untranslated ids)."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po, write_po

    path = catalog_path(lang)
    old: dict[str, str] = {}
    created = None
    if path.exists():
        with path.open("rb") as f:
            previous = read_po(f, locale=lang)
        created = previous.creation_date
        for m in previous:
            if m.id and isinstance(m.id, str) and m.string:
                old[m.id] = str(m.string)
    catalog = Catalog(locale=lang, project="mot-cua-portal", version="1", charset="utf-8",
                      fuzzy=False, creation_date=created, revision_date=created,
                      last_translator="mot-cua-portal", language_team="mot-cua-portal")
    missing: list[str] = []
    messages = extract_messages(root)
    for msgid, locations in messages:
        catalog.add(msgid, old.get(msgid, ""), locations=locations)
        if not old.get(msgid):
            missing.append(msgid)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        write_po(f, catalog, width=100, omit_header=False, sort_output=True)
    translations.cache_clear()
    return len(messages), missing


if __name__ == "__main__":  # python -m portal.i18n extract
    import sys

    if sys.argv[1:] != ["extract"]:
        sys.exit("usage: python -m portal.i18n extract")
    count, missing = update_catalog(Path(__file__).resolve().parent.parent)
    print(f"{count} messages, {len(missing)} without an English translation")
    for m in missing:
        print("  -", m)
