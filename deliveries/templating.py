"""Clients' templates: Django template syntax, checked when saved, rendered when mail is accepted.

A client's template is code from outside, so it runs in an engine of its own:
- no loaders, so ``include`` and ``extends`` cannot read files from the server;
- only the tags and filters in ``register`` below: no ``load``, ``url``, ``debug``, ``csrf_token``,
  nor the filters whose argument can make a huge string (``center``, ``ljust``, ``rjust``,
  ``stringformat``, ``lorem``); ``floatformat`` takes at most 20 decimal places;
- HTML is autoescaped, the subject and the text part are not (they are not HTML).

A variable the template prints but the context does not have is an error (``missing_variable``),
not an empty string: mail that says "Dear ," is worse than a 400. ``{% if x %}`` and
``{{ x|default:"..." }}`` still work with a missing ``x``, as they do in Django.

Compiled templates are cached per process, keyed by (template id, updated_at): an update changes
``updated_at``, so a stale compiled template is never used.
"""

from __future__ import annotations

import contextvars
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.template import (
    Context,
    Engine,
    Library,
    TemplateSyntaxError,
    defaultfilters,
    defaulttags,
)
from django.template.base import (
    FilterExpression,
    Template,
    Variable,
    VariableDoesNotExist,
    VariableNode,
)
from django.template.defaulttags import ForNode, WithNode

PARTS = ("subject", "text", "html")

register = Library()

_TAGS = [
    "autoescape",
    "comment",
    "cycle",
    "filter",
    "firstof",
    "for",
    "if",
    "ifchanged",
    "now",
    "regroup",
    "resetcycle",
    "spaceless",
    "templatetag",
    "verbatim",
    "widthratio",
    "with",
]
_FILTERS = [
    "add",
    "addslashes",
    "capfirst",
    "cut",
    "date",
    "default",
    "default_if_none",
    "dictsort",
    "dictsortreversed",
    "divisibleby",
    "escape",
    "escapejs",
    "escapeseq",
    "filesizeformat",
    "first",
    "force_escape",
    "get_digit",
    "iriencode",
    "join",
    "last",
    "length",
    "linebreaks",
    "linebreaksbr",
    "linenumbers",
    "lower",
    "make_list",
    "phone2numeric",
    "pluralize",
    "random",
    "safe",
    "safeseq",
    "slice",
    "slugify",
    "striptags",
    "time",
    "timesince",
    "timeuntil",
    "title",
    "truncatechars",
    "truncatechars_html",
    "truncatewords",
    "truncatewords_html",
    "unordered_list",
    "upper",
    "urlencode",
    "urlize",
    "urlizetrunc",
    "wordcount",
    "wordwrap",
    "yesno",
]
for _name in _TAGS:
    register.tags[_name] = defaulttags.register.tags[_name]
for _name in _FILTERS:
    register.filters[_name] = defaultfilters.register.filters[_name]

_MAX_DECIMAL_PLACES = 20


@register.filter(is_safe=True)
def floatformat(value, arg=-1):
    """Django's ``floatformat``, with the precision bounded (a huge one builds a huge string)."""
    digits = str(arg).rstrip("gu")
    try:
        places = int(digits) if digits else 0
    except ValueError:
        places = 0
    if abs(places) > _MAX_DECIMAL_PLACES:
        raise TemplateSyntaxError(f"floatformat takes at most {_MAX_DECIMAL_PLACES} places")
    return defaultfilters.floatformat(value, arg)


class _SandboxEngine(Engine):
    # Engine always adds its default builtins (every tag and filter); this one has only ours.
    default_builtins: list[str] = []


class _MissingValue(str):
    """What a variable the context lacks resolves to: falsy (so ``default`` and ``if`` work) and
    recorded the moment the template prints it."""

    def _printed(self) -> str:
        misses = _misses.get()
        if misses is not None:
            misses.append(True)
        return ""

    def __str__(self) -> str:
        return self._printed()

    def __html__(self) -> str:
        return self._printed()


_misses: contextvars.ContextVar[list | None] = contextvars.ContextVar("misses", default=None)

_ENGINE = _SandboxEngine(
    loaders=[],
    builtins=["deliveries.templating"],
    libraries={},
    string_if_invalid=_MissingValue(""),
)


class TemplateProblem(Exception):
    """A template that cannot be saved or rendered; ``errors`` maps part -> (code, message)."""

    def __init__(self, errors: Mapping[str, tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{part}: {message}" for part, (_, message) in errors.items()))
        self.errors = dict(errors)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class _Compiled:
    subject: Template
    text: Template
    html: Template


def _compile(source: str) -> Template:
    return _ENGINE.from_string(source)


def template_check(*, subject: str, text: str, html: str) -> None:
    """Raise ``TemplateProblem`` naming each part that does not compile."""
    errors = {}
    for part, source in zip(PARTS, (subject, text, html), strict=True):
        try:
            _compile(source)
        except TemplateSyntaxError as exc:
            errors[part] = ("template_syntax", f"Template syntax error: {exc}")
    if errors:
        raise TemplateProblem(errors)


class _CompiledCache:
    """A small LRU of compiled templates, shared by the threads of one process."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[int, datetime], _Compiled] = OrderedDict()
        self._lock = threading.Lock()
        self.compilations = 0  # for tests: how often a template was actually compiled

    def get(self, template) -> _Compiled:
        key = (template.id, template.updated_at)
        with self._lock:
            compiled = self._items.get(key)
            if compiled is not None:
                self._items.move_to_end(key)
                return compiled
        compiled = _Compiled(*(_compile(getattr(template, part)) for part in PARTS))
        with self._lock:
            self.compilations += 1
            self._items[key] = compiled
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return compiled


compiled_templates = _CompiledCache(size=512)


def template_render(*, template, context: Mapping[str, Any]) -> Rendered:
    """Render a stored ``deliveries.models.Template`` with a client's context.

    Raises ``TemplateProblem`` when a part prints a variable the context lacks or fails while
    rendering (a filter refusing its input, say): that is the client's input, so a 400.
    """
    compiled = compiled_templates.get(template)
    out: dict[str, str] = {}
    errors: dict[str, tuple[str, str]] = {}
    for part in PARTS:
        source_template: Template = getattr(compiled, part)
        token = _misses.set([])
        try:
            # Rendered on a copy: a template calling a dict method (`clear`) must not change the
            # context the next part or the next recipient sees.
            ctx = Context(_copy(context), autoescape=part == "html")
            try:
                out[part] = source_template.render(ctx)
            except TemplateSyntaxError as exc:
                errors[part] = ("render_error", f"Rendering failed: {exc}")
                continue
            except (
                ArithmeticError,
                AttributeError,
                LookupError,
                TypeError,
                ValueError,
                RecursionError,
            ) as exc:
                # A filter given the wrong kind of value (`divisibleby:0`, a date filter on a
                # list): the client's template or context, never a worker failure.
                errors[part] = ("render_error", f"Rendering failed: {type(exc).__name__}: {exc}")
                continue
            if _misses.get():
                names = _missing_names(source_template, context)
                which = ", ".join(names) if names else "a variable"
                example = names[0] if names else "x"
                errors[part] = (
                    "missing_variable",
                    f"The template prints {which} but the context does not give it "
                    f'(write {{{{ {example}|default:"" }}}} to allow it to be empty).',
                )
        finally:
            _misses.reset(token)
    if errors:
        raise TemplateProblem(errors)
    return Rendered(subject=out["subject"], text=out["text"], html=out["html"])


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _missing_names(template: Template, context: Mapping[str, Any]) -> list[str]:
    """Best effort: the printed variables that do not resolve against the context."""
    nodelist = template.nodelist
    bound = {"forloop"}
    for node in nodelist.get_nodes_by_type(ForNode):
        bound.update(node.loopvars)
    for node in nodelist.get_nodes_by_type(WithNode):
        bound.update(node.extra_context)
    names = []
    probe = Context(_copy(context))
    for node in nodelist.get_nodes_by_type(VariableNode):
        expression: FilterExpression = node.filter_expression
        variable = expression.var
        if not isinstance(variable, Variable) or variable.lookups is None:
            continue
        if variable.lookups[0] in bound:
            continue
        if any(func.__name__.startswith("default") for func, _ in expression.filters):
            continue
        try:
            variable.resolve(probe)
        except VariableDoesNotExist:
            if variable.var not in names:
                names.append(variable.var)
    return names
