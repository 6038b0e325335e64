"""Clients' templates: Django template syntax, checked when saved, rendered when mail is accepted.

A client's template is code from outside, so it runs in an engine of its own:
- no loaders, so ``include`` and ``extends`` cannot read files from the server;
- only the tags and filters in ``register`` below: no ``load``, ``url``, ``debug``, ``csrf_token``,
  nor the filters whose argument can make a huge string (``center``, ``ljust``, ``rjust``,
  ``stringformat``, ``lorem``); ``floatformat`` takes at most 20 decimal places;
- HTML is autoescaped, the subject and the text part are not (they are not HTML).

It also runs on a budget, because it is rendered in the web process while a client waits and a
few hundred bytes of template can ask for hours (three nested ``for`` over a 200-item list are
8 million iterations). Each render, and each compilation, may use
``MAILHUB_TEMPLATE_CPU_SECONDS`` of the thread's CPU time, and each part may come to
``MAILHUB_TEMPLATE_MAX_OUTPUT_CHARS`` characters; past either it is refused
(``template_too_expensive``). Nothing in a render runs long without looking at the budget:
- every node of every node list, every iteration of a ``for`` and every item ``regroup`` groups
  looks at the clock, and every piece of output is counted before it is joined to the others;
- a filter is one call into Django that cannot be interrupted, so before it runs it is charged
  what it may cost at worst for the size of its input (``_FILTER_NS_PER_CHAR``, measured), and
  refused if that does not fit in what is left; a string it returns counts as output;
- the context is copied for each part, charged per item, at most ``MAX_CONTEXT_DEPTH`` deep;
- compiling is charged per token, tags nest at most ``MAX_NESTING`` deep, and one tag or
  variable has at most ``MAX_TAG_CHARS`` characters (the work a single tag does is in proportion).
A refusal is sticky: a tag that swallows exceptions (``{% if a == b %}`` does) cannot hide it.

A variable the template prints but the context does not have is an error (``missing_variable``),
not an empty string: mail that says "Dear ," is worse than a 400. ``{% if x %}`` and
``{{ x|default:"..." }}`` still work with a missing ``x``, as they do in Django.

Compiled templates are cached per process, keyed by (template id, updated_at): an update changes
``updated_at``, so a stale compiled template is never used.
"""

from __future__ import annotations

import contextvars
import functools
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

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
    Lexer,
    Node,
    NodeList,
    Parser,
    Template,
    Variable,
    VariableDoesNotExist,
    VariableNode,
)
from django.template.defaulttags import ForNode, RegroupNode, WithNode
from django.utils.safestring import SafeString

from deliveries import conf
from mailhub.errors import MailhubError

PARTS = ("subject", "text", "html")

#: Block tags inside block tags; a real email rarely goes past six.
MAX_NESTING = 32
#: Characters in one ``{% tag %}`` or ``{{ variable }}``. Compiling or evaluating one tag is a
#: single step the budget cannot interrupt, and its cost grows with its length (3 µs a character
#: for a long ``{% if a or b or ... %}``).
MAX_TAG_CHARS = 2000
#: Lists and objects inside each other in a context (the API refuses deeper JSON already).
MAX_CONTEXT_DEPTH = 32

register = Library()

_TAGS = [
    "autoescape",
    "comment",
    "cycle",
    "filter",
    "firstof",
    "if",
    "ifchanged",
    "now",
    "resetcycle",
    "spaceless",
    "templatetag",
    "verbatim",
    "widthratio",
    "with",
]  # and "for" and "regroup", below, with the budget
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


# -- the budget ----------------------------------------------------------------------------------


class _TooExpensive(Exception):
    """A render or a compilation that would go past its budget. Not a ``TemplateSyntaxError`` nor
    anything else ``template_render`` maps to another code."""


class _Budget:
    """The CPU time and the output one render (or compilation) may still use.

    CPU time of this thread, not wall-clock time: a process busy with other requests (eight
    threads share one interpreter) must not make a template that fits its budget fail.
    Reading the thread's CPU clock is a system call (0.6 µs here); reading the monotonic clock
    costs 45 ns, and a thread cannot use more CPU than the time that passes, so the cheap clock
    is read at every step and the CPU clock only when the cheap one says the budget may be spent.
    """

    __slots__ = ("_cpu_start", "compiling", "deadline", "max_output", "refused", "seconds")

    def __init__(self, *, seconds: float, max_output: int, compiling: bool = False) -> None:
        self.seconds = seconds
        self.compiling = compiling
        self.max_output = max_output
        self.refused: str | None = None
        self._cpu_start = time.thread_time()
        self.deadline = time.perf_counter() + seconds

    def spend(self, seconds: float = 0.0, *, what: str = "") -> None:
        """Go on only if ``seconds`` more of CPU fit in what is left (a step with 0)."""
        if time.perf_counter() + seconds > self.deadline:
            self._settle(seconds, what)

    def _settle(self, seconds: float, what: str) -> None:
        if self.refused is not None:
            raise _TooExpensive(self.refused)
        left = self.seconds - (time.thread_time() - self._cpu_start)
        if seconds > left:
            budget = f"{self.seconds * 1000:g} ms"
            if what:
                self.refuse(
                    f"{what} may need up to {seconds * 1000:.0f} ms of CPU, more than is left of "
                    f"the {budget} a template has to render."
                )
            if self.compiling:
                self.refuse(f"The template has too many tags to compile in {budget} of CPU.")
            self.refuse(
                f"The template needs more than {budget} of CPU to render with this context "
                "(loops over long lists, or loops inside loops?)."
            )
        self.deadline = time.perf_counter() + left

    def output(self, size: int) -> None:
        if size > self.max_output:
            self.refuse(
                f"The template makes more than {self.max_output} characters with this context."
            )

    def refuse(self, reason: str) -> None:
        # Sticky: every later step raises again, so that a tag swallowing the exception (the
        # operators of `if` return False on any exception) cannot let the render go on.
        self.refused = reason
        self.deadline = -math.inf
        raise _TooExpensive(reason)


_budget: contextvars.ContextVar[_Budget] = contextvars.ContextVar("template_budget")


def _new_budget(*, compiling: bool = False) -> _Budget:
    return _Budget(
        seconds=conf.template_cpu_seconds(),
        max_output=conf.template_max_output_chars(),
        compiling=compiling,
    )


#: Worst-case cost of each filter that reads its whole input, in nanoseconds per character of
#: that input: the slowest of about twenty strings of 100 000 characters built to be slow for it
#: (runs of "<", of newlines, of astral characters, tags without words...), measured on the
#: 2-core machine the tests run on, times 2 (a busy machine measured up to 1.6 times its quiet
#: figures). A filter that is not here is O(1) or nearly so. ``date`` and ``time`` are charged
#: for their format alone (each `r` in it is a dozen method calls).
_FILTER_NS_PER_CHAR = {
    "add": 5,
    "addslashes": 20,
    "capfirst": 10,
    "cut": 10,
    "date": 10_000,
    "dictsort": 60,
    "dictsortreversed": 60,
    "escape": 30,
    "escapejs": 110,
    "escapeseq": 4000,
    "floatformat": 20,
    "force_escape": 30,
    "iriencode": 320,
    "join": 3000,
    "linebreaks": 900,
    "linebreaksbr": 30,
    "linenumbers": 3000,
    "lower": 10,
    "make_list": 120,
    "phone2numeric": 240,
    "safeseq": 2500,
    "slugify": 170,
    "striptags": 1600,
    "time": 10_000,
    "title": 70,
    "truncatechars": 170,
    "truncatechars_html": 3700,
    "truncatewords": 45,
    "truncatewords_html": 4300,
    "unordered_list": 5000,
    "upper": 10,
    "urlencode": 300,
    "urlize": 430,
    "urlizetrunc": 430,
    "wordcount": 40,
    "wordwrap": 1100,
}
_ARGUMENT_ONLY = frozenset({"date", "time"})
_ARGUMENT_PER_ITEM = frozenset({"join", "dictsort", "dictsortreversed"})
#: A list or object given to a filter is first turned into text (``str()``) by most of them,
#: then read: this much more per character it prints as.
_REPR_NS_PER_CHAR = 45
#: Sizing a list or object (``_size``) and copying a context, per item.
_WALK_NS_PER_ITEM = 750
_COPY_NS_PER_ITEM = 1400
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _size(value: Any, budget: _Budget, what: str = "") -> int:
    """About how many characters ``value`` prints as: what a filter reading all of it goes
    through. A list or object is walked (on the budget: one built with `add` may hold the same
    big list many times over)."""
    kind = type(value)
    if kind is str or isinstance(value, str):
        return len(value)
    if kind in _SCALARS or not isinstance(value, Collection):
        return 8
    if isinstance(value, bytes):
        return 4 * len(value)
    size = 0
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            size += len(item) + 2
        elif kind in _SCALARS:
            size += 8
        elif isinstance(item, Mapping):
            budget.spend(len(item) * _WALK_NS_PER_ITEM * 1e-9, what=what)
            size += 2 + 4 * len(item)
            stack += item.keys()
            stack += item.values()
        elif isinstance(item, str | bytes):
            size += 4 * len(item) + 2
        elif isinstance(item, Collection):
            budget.spend(len(item) * _WALK_NS_PER_ITEM * 1e-9, what=what)
            size += 2 + 2 * len(item)
            stack += item
        else:
            size += 8
    return size


def _filter_cost(name: str, func: Callable, value: Any, args: tuple, budget: _Budget) -> float:
    """Seconds of CPU ``func`` may take at worst on this input (sizing it is on the budget)."""
    what = f"`{name}` on this input"
    per_char = _FILTER_NS_PER_CHAR.get(name, 0)
    text = isinstance(value, str)
    # A list or object is turned into text first by `safe` and the other string filters (those
    # Django wraps in `stringfilter`), and by most of the filters with a cost.
    to_text = 0 if text or not (per_char or hasattr(func, "__wrapped__")) else _REPR_NS_PER_CHAR
    if not per_char and not to_text:
        return 0.0
    ns = sum(_size(arg, budget, what) for arg in args) * per_char
    if name not in _ARGUMENT_ONLY:
        ns += _size(value, budget, what) * (per_char + to_text)
        if args and name in _ARGUMENT_PER_ITEM and isinstance(value, Collection):
            # The separator of `join`, the path to the key of `dictsort`: used once per item.
            ns += len(value) * _size(args[0], budget, what) * per_char
    return ns * 1e-9


def _charged(name: str, func: Callable) -> Callable:
    """``func``, charged to the render's budget before it runs, its output counted after."""
    seconds_per_char = _FILTER_NS_PER_CHAR.get(name, 0) * 1e-9
    what = f"`{name}` on this input"
    value_read = name not in _ARGUMENT_ONLY
    argument_per_item = name in _ARGUMENT_PER_ITEM

    @functools.wraps(func)  # keeps Django's flags (is_safe, needs_autoescape) and its signature
    def charged(value, *args, **kwargs):
        budget = _budget.get()
        # The common case, text and numbers (a filter has at most one argument), kept short.
        if type(value) in _SCALARS and (not args or type(args[0]) in _SCALARS):
            chars = len(value) if value_read and type(value) is str else 0
            if args and type(args[0]) is str:
                chars += len(args[0]) * (len(value) + 1 if argument_per_item else 1)
            seconds = chars * seconds_per_char
            if time.perf_counter() + seconds > budget.deadline:
                budget.spend(seconds, what=what)
        else:
            budget.spend(_filter_cost(name, func, value, args, budget), what=what)
        result = func(value, *args, **kwargs)
        if isinstance(result, str):
            if len(result) > budget.max_output:
                budget.output(len(result))
        elif name == "add" and isinstance(result, Collection):
            # The one filter that can double a list (`{% with b=a|add:a %}`, nested).
            budget.output(_size(result, budget, what))
        return result

    return charged


for _name, _func in list(register.filters.items()):
    register.filters[_name] = _charged(_name, _func)


class _NodeList(NodeList):
    """A node list that looks at the budget before each node and counts what they make."""

    def render(self, context) -> SafeString:
        budget = _budget.get()
        clock = time.perf_counter
        limit = budget.max_output
        pieces = []
        size = 0
        for node in self:
            if clock() > budget.deadline:
                budget.spend()
            # A node renders text; django-stubs declares render_annotated as ``int | str``.
            piece = cast(str, node.render_annotated(context))
            size += len(piece)
            if size > limit:
                budget.output(size)
            pieces.append(piece)
        return SafeString("".join(pieces))


class _ForNode(ForNode):
    """Django's ``for`` (5.2), looking at the budget on every iteration and counting output.

    Django's loop renders the nodes of its body itself rather than through their node list, so
    the node list alone would not see a loop's iterations.
    """

    # What Django's parser gives the node (django-stubs declares wider types for them).
    sequence: FilterExpression
    nodelist_loop: NodeList
    nodelist_empty: NodeList

    def render(self, context) -> SafeString:
        budget = _budget.get()
        parentloop = context.get("forloop", {})
        with context.push():
            values = self.sequence.resolve(context, ignore_failures=True)
            if values is None:
                values = []
            if not hasattr(values, "__len__"):
                values = list(values)
            len_values = len(values)
            if len_values < 1:
                return self.nodelist_empty.render(context)
            pieces = []
            size = 0
            if self.is_reversed:
                values = reversed(values)
            num_loopvars = len(self.loopvars)
            unpack = num_loopvars > 1
            loop_dict = context["forloop"] = {"parentloop": parentloop}
            clock = time.perf_counter
            limit = budget.max_output
            for i, item in enumerate(values):
                if clock() > budget.deadline:
                    budget.spend()
                loop_dict["counter0"] = i
                loop_dict["counter"] = i + 1
                loop_dict["revcounter"] = len_values - i
                loop_dict["revcounter0"] = len_values - i - 1
                loop_dict["first"] = i == 0
                loop_dict["last"] = i == len_values - 1
                pop_context = False
                if unpack:
                    try:
                        len_item = len(item)
                    except TypeError:
                        len_item = 1
                    if num_loopvars != len_item:
                        raise ValueError(
                            f"Need {num_loopvars} values to unpack in for loop; got {len_item}. "
                        )
                    context.update(dict(zip(self.loopvars, item, strict=True)))
                    pop_context = True
                else:
                    context[self.loopvars[0]] = item
                for node in self.nodelist_loop:
                    piece = cast(str, node.render_annotated(context))
                    size += len(piece)
                    if size > limit:
                        budget.output(size)
                    pieces.append(piece)
                if pop_context:
                    context.pop()
        return SafeString("".join(pieces))


@register.tag("for")
def do_for(parser, token) -> _ForNode:
    node = defaulttags.do_for(parser, token)
    return _ForNode(
        node.loopvars, node.sequence, node.is_reversed, node.nodelist_loop, node.nodelist_empty
    )


class _RegroupNode(RegroupNode):
    """Django's ``regroup``, looking at the budget for each item it groups."""

    def resolve_expression(self, obj, context):
        budget = _budget.get()
        if time.perf_counter() > budget.deadline:
            budget.spend()
        return super().resolve_expression(obj, context)


@register.tag("regroup")
def regroup(parser, token) -> _RegroupNode:
    node = defaulttags.regroup(parser, token)
    return _RegroupNode(node.target, node.expression, node.var_name)


# -- compiling -------------------------------------------------------------------------------------

_CLOSERS = {"{%": "%}", "{{": "}}", "{#": "#}"}


def _split(source: str, budget: _Budget) -> list[str]:
    """What Django's ``tag_re.split(source)`` gives (text, tag, text, ..., text), in linear time.

    ``tag_re`` is ``{%.*?%}|{{.*?}}|{#.*?#}``: from each ``{{`` without a ``}}`` after it on its
    line, the regular expression reads to the end of the line, so 80 KB of ``{{`` take it 40 s.
    Here, once an opener has no closer before its line break, no opener of its kind is tried
    again before the line where the next closer is; where the next of each thing is, is looked
    up once until passed.
    """
    pieces = []
    pos = 0
    found: dict[str, tuple[int, int]] = {}  # what -> (searched from, index found or -1)

    def find(what: str, start: int) -> int:
        searched_from, index = found.get(what, (math.inf, -1))
        if searched_from <= start and (index == -1 or index >= start):
            return index
        index = source.find(what, start)
        found[what] = (start, index)
        return index

    blocked = dict.fromkeys(_CLOSERS, 0)  # opener -> where one of its kind may next close
    start = 0
    while True:
        budget.spend()
        openings = [
            (index, opener)
            for opener in _CLOSERS
            if (index := find(opener, max(start, blocked[opener]))) != -1
        ]
        if not openings:
            break
        opening, opener = min(openings)
        end = find(_CLOSERS[opener], opening + 2)
        line_break = find("\n", opening + 2)
        if end != -1 and (line_break == -1 or end < line_break):
            pieces += [source[pos:opening], source[opening : end + 2]]
            pos = start = end + 2
        else:
            # Every opener of its kind before the line of its next closer fails the same way.
            blocked[opener] = len(source) if end == -1 else source.rfind("\n", 0, end) + 1
    pieces.append(source[pos:])
    return pieces


class _Lexer(Lexer):
    """Django's lexer, in linear time, on the compilation's budget, with tags of bounded size."""

    def __init__(self, template_string: str, budget: _Budget) -> None:
        super().__init__(template_string)
        self.budget = budget

    def tokenize(self):
        in_tag = False
        lineno = 1
        result = []
        for token_string in _split(self.template_string, self.budget):
            if token_string:
                self.budget.spend()
                if in_tag and len(token_string) > MAX_TAG_CHARS and token_string[1] != "#":
                    raise _TooExpensive(
                        f"Line {lineno}: a tag or variable is longer than {MAX_TAG_CHARS} "
                        "characters."
                    )
                result.append(self.create_token(token_string, None, lineno, in_tag))
                lineno += token_string.count("\n")
            in_tag = not in_tag
        return result


class _Parser(Parser):
    """Django's parser, on the compilation's budget, nesting at most ``MAX_NESTING`` deep, and
    making the budgeted node lists."""

    # Set by Django 5.2's Parser; django-stubs 5.2 does not declare it.
    extra_data: dict[str, Any]

    def __init__(self, *args, budget: _Budget, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.budget = budget
        self.depth = 0

    def next_token(self):
        self.budget.spend()
        return super().next_token()

    def parse(self, parse_until=None) -> _NodeList:
        # Block tags parse their contents by calling this again: its depth is their nesting.
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise _TooExpensive(f"Tags are nested more than {MAX_NESTING} deep.")
            nodelist = super().parse(parse_until)
        finally:
            self.depth -= 1
        budgeted = _NodeList(nodelist)
        budgeted.contains_nontext = nodelist.contains_nontext
        return budgeted


class _Template(Template):
    def __init__(self, source: str, *, engine: Engine, budget: _Budget) -> None:
        self._compile_budget = budget
        super().__init__(source, engine=engine)
        del self._compile_budget

    def compile_nodelist(self) -> _NodeList:
        budget = self._compile_budget
        tokens = _Lexer(self.source, budget).tokenize()
        parser = _Parser(
            tokens,
            self.engine.template_libraries,
            self.engine.template_builtins,
            self.origin,
            budget=budget,
        )
        nodelist = parser.parse()
        self.extra_data = parser.extra_data
        return nodelist


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


class TemplateProblem(MailhubError):
    """A template that cannot be saved (``template_check``) or rendered (``template_render``,
    with ``rendering`` set): the client's input, refused. ``errors`` maps each part at fault
    (subject, text, html) to (code, message)."""

    def __init__(self, errors: Mapping[str, tuple[str, str]], *, rendering: bool = False) -> None:
        super().__init__(
            "; ".join(f"{part}: {message}" for part, (_, message) in errors.items()),
            code="template_problem",
        )
        self.errors = dict(errors)
        self.rendering = rendering

    def by_input(self) -> dict[str, list[tuple[str, str]]]:
        """The errors by the input at fault, as (code, message) pairs. Checking, that is each
        part given (``subject``, ``text``, ``html``); rendering, the ``context`` for a variable it
        lacks and the ``template`` for anything else, each message then naming its part."""
        if not self.rendering:
            return {part: [error] for part, error in self.errors.items()}
        inputs: dict[str, list[tuple[str, str]]] = {}
        for part, (code, message) in self.errors.items():
            at_fault = "context" if code == "missing_variable" else "template"
            inputs.setdefault(at_fault, []).append((code, f"{part}: {message}"))
        return inputs


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


_TOO_DEEP = "The template or its context is nested too deeply."


def _compile_parts(*, subject: str, text: str, html: str, rendering: bool = False) -> _Compiled:
    """The three parts compiled on one budget; ``TemplateProblem`` naming each that fails."""
    budget = _new_budget(compiling=True)
    compiled: dict[str, Template] = {}
    errors = {}
    for part, source in zip(PARTS, (subject, text, html), strict=True):
        try:
            compiled[part] = _Template(source, engine=_ENGINE, budget=budget)
        except _TooExpensive as exc:
            errors[part] = ("template_too_expensive", str(exc))
            break  # the budget is spent: the parts after this one could only be refused too
        except RecursionError:
            errors[part] = ("template_too_expensive", _TOO_DEEP)
        except TemplateSyntaxError as exc:
            errors[part] = ("template_syntax", f"Template syntax error: {exc}")
    if errors:
        raise TemplateProblem(errors, rendering=rendering)
    return _Compiled(**compiled)


def template_check(*, subject: str, text: str, html: str) -> None:
    """Raise ``TemplateProblem`` naming each part that does not compile."""
    _compile_parts(subject=subject, text=text, html=html)


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
        # Compiled to be rendered: a problem now is the stored template's.
        compiled = _compile_parts(
            **{part: getattr(template, part) for part in PARTS}, rendering=True
        )
        with self._lock:
            self.compilations += 1
            self._items[key] = compiled
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return compiled


compiled_templates = _CompiledCache(size=512)


def template_render(*, template, context: Mapping[str, Any]) -> Rendered:
    """Render a stored ``deliveries.models.Template`` with a client's context.

    Raises ``TemplateProblem`` when a part prints a variable the context lacks, fails while
    rendering (a filter refusing its input, say), or goes past the budget
    (``template_too_expensive``): that is the client's input, refused (``rendering`` set, see
    ``TemplateProblem.by_input``). The budget is for the
    whole render, the three parts together; compiling, when the template is not cached yet, has
    a budget of its own.
    """
    compiled = compiled_templates.get(template)
    budget = _new_budget()
    budget_token = _budget.set(budget)
    try:
        return _render_parts(compiled, context, budget)
    finally:
        _budget.reset(budget_token)


def _render_parts(compiled: _Compiled, context: Mapping[str, Any], budget: _Budget) -> Rendered:
    out: dict[str, str] = {}
    errors: dict[str, tuple[str, str]] = {}
    for part in PARTS:
        source_template: Template = getattr(compiled, part)
        token = _misses.set([])
        try:
            try:
                # Rendered on a copy: a template calling a dict method (`clear`) must not change
                # the context the next part or the next recipient sees.
                ctx = Context(_copy(context, budget), autoescape=part == "html")
                out[part] = source_template.render(ctx)
                if budget.refused is not None:  # refused inside a tag that swallowed it
                    raise _TooExpensive(budget.refused)
            except _TooExpensive as exc:
                # The budget is spent: the parts after this one could only be refused too.
                errors[part] = ("template_too_expensive", str(exc))
                break
            except RecursionError:
                errors[part] = ("template_too_expensive", _TOO_DEEP)
                break
            except VariableDoesNotExist as exc:
                # A filter's argument naming a variable the context lacks (`join:sep`). Not
                # str(exc): it holds the repr of the whole context.
                name = exc.params[0] if exc.params else "a variable"
                errors[part] = (
                    "missing_variable",
                    f"The template uses {_short(name)} but the context does not give it.",
                )
                continue
            except TemplateSyntaxError as exc:
                errors[part] = ("render_error", f"Rendering failed: {_short(exc)}")
                continue
            except (
                ArithmeticError,
                AttributeError,
                LookupError,
                TypeError,
                ValueError,
            ) as exc:
                # A filter given the wrong kind of value (`divisibleby:0`, a date filter on a
                # list): the client's template or context, never a worker failure.
                errors[part] = (
                    "render_error",
                    f"Rendering failed: {type(exc).__name__}: {_short(exc)}",
                )
                continue
            if _misses.get():
                try:
                    names = _missing_names(source_template, context, budget)
                except _TooExpensive:
                    names = []
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
        raise TemplateProblem(errors, rendering=True)
    return Rendered(subject=out["subject"], text=out["text"], html=out["html"])


def _short(value: object) -> str:
    """At most 200 characters of ``value``'s text: an error may quote a long input."""
    text = str(value)
    return text if len(text) <= 200 else text[:199] + "…"


def _copy(value: Any, budget: _Budget, depth: int = 0) -> Any:
    kind = type(value)
    if kind is not dict and kind is not list and not isinstance(value, Mapping | list):
        return value
    if depth >= MAX_CONTEXT_DEPTH:
        raise _TooExpensive(f"The context is nested more than {MAX_CONTEXT_DEPTH} deep.")
    budget.spend(len(value) * _COPY_NS_PER_ITEM * 1e-9, what="Copying the context")
    depth += 1
    if isinstance(value, Mapping):
        return {
            key: item if type(item) in _SCALARS else _copy(item, budget, depth)
            for key, item in value.items()
        }
    return [item if type(item) in _SCALARS else _copy(item, budget, depth) for item in value]


_NodeType = TypeVar("_NodeType", bound=Node)


def _nodes_of_type(nodelist: NodeList, kind: type[_NodeType]) -> list[_NodeType]:
    """``get_nodes_by_type``, typed by the kind asked for (django-stubs says only ``Node``)."""
    return [node for node in nodelist.get_nodes_by_type(kind) if isinstance(node, kind)]


def _missing_names(template: Template, context: Mapping[str, Any], budget: _Budget) -> list[str]:
    """Best effort: the printed variables that do not resolve against the context."""
    nodelist = template.nodelist
    bound = {"forloop"}
    for for_node in _nodes_of_type(nodelist, ForNode):
        bound.update(for_node.loopvars)
    for with_node in _nodes_of_type(nodelist, WithNode):
        bound.update(with_node.extra_context)
    names: list[str] = []
    probe = Context(_copy(context, budget))
    for node in _nodes_of_type(nodelist, VariableNode):
        budget.spend()
        expression: FilterExpression = node.filter_expression
        variable = expression.var
        # A variable with lookups is a name (a str); literals have none.
        if (
            not isinstance(variable, Variable)
            or variable.lookups is None
            or not isinstance(variable.var, str)
        ):
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
