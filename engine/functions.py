"""The function library flows can call: money, dates, ids, lookups, text.

Each function is written once here and exposed twice: as a JMESPath function (``=money(x)``,
``when: "contains(...)"``) and as a Jinja filter and global (``<<x | money>>``,
``<<uuid5(tenant, 'order', order.id)>>``). docs/functions.md lists them; a test keeps that
page and this table in step.
"""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, DecimalException
from functools import lru_cache
from typing import Any, Callable, Mapping

from hexaflow.jmespath_private import functions as jp_functions
from hexaflow.jmespath_private import jmespath

from hexaflow import money, timeutil

from hexaflow.errors import RecordError

# Fixed namespace for deterministic ids: changing it would re-key every document ever sent.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://hexaflow.dev/ids")
_ID_NAMESPACE_BYTES = ID_NAMESPACE.bytes
_ZERO, _ONE = Decimal(0), Decimal(1)


def failure_reason(exc: BaseException) -> str:
    """What went wrong, in words, when mapping a record raised ``exc``. Any exception while
    mapping one record fails that record only (a dead letter), never the run: values from a
    source can be anything (1e400, year 1, a list where a number belongs)."""
    if isinstance(exc, (RecordError, money.MoneyError)):
        return str(exc)
    if isinstance(exc, ZeroDivisionError):
        return "division by zero"
    if isinstance(exc, DecimalException):
        return "the computation gives no number (a value too large, or not a number)"
    if isinstance(exc, OverflowError):
        return f"a value out of range ({exc})"
    if isinstance(exc, RecursionError):
        return "a value nested too deeply"
    if isinstance(exc, (TypeError, ValueError)) and str(exc):
        return str(exc)               # a value of the wrong kind, said by Python itself
    return f"{type(exc).__name__}: {exc}"


@dataclass
class FunctionContext:
    """What functions need beyond their arguments: the flow's time zone and tables."""
    timezone: str = timeutil.DEFAULT_TIMEZONE
    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    table_files: Mapping[str, str] = field(default_factory=dict)


def _num(value: Any, what: str) -> Decimal:
    if type(value) is Decimal:
        return value
    if type(value) is int:        # quantities, literals
        return Decimal(value)
    if value is None:
        raise RecordError(f"{what}: expected a number, got null")
    try:
        return money.to_decimal(value)
    except money.MoneyError:
        raise RecordError(f"{what}: expected a number, got {value!r}") from None


class Library:
    """The functions, bound to one flow's context."""

    def __init__(self, ctx: FunctionContext):
        self.ctx = ctx

    # -- money ----------------------------------------------------------------------
    # The arithmetic runs for every line of every record. Decimal arguments (the usual case)
    # skip the _num call, and so do ints (quantities, literals) where the other operand is
    # already a Decimal: Decimal arithmetic converts an int exactly, as Decimal(int) would.
    def money(self, value: Any, places: int = 0) -> Decimal:
        """Round to whole đồng (or ``places`` decimals), half up."""
        if type(value) is not Decimal:
            value = _num(value, "money")
        return money.round_money(value, places if type(places) is int else int(places))

    def add(self, *values: Any) -> Decimal:
        result = _ZERO
        for v in values:
            result += v if type(v) is Decimal or type(v) is int else _num(v, "add")
        return result

    def sub(self, a: Any, b: Any) -> Decimal:
        a = a if type(a) is Decimal else _num(a, "sub")
        return a - (b if type(b) is Decimal or type(b) is int else _num(b, "sub"))

    def mul(self, *values: Any) -> Decimal:
        result = _ONE
        for v in values:
            result *= v if type(v) is Decimal or type(v) is int else _num(v, "mul")
        return result

    def div(self, a: Any, b: Any) -> Decimal:
        divisor = b if type(b) is Decimal or type(b) is int else _num(b, "div")
        if divisor == 0:
            raise RecordError("div: division by zero")
        return (a if type(a) is Decimal else _num(a, "div")) / divisor

    def net_of_vat(self, gross: Any, rate: Any) -> Decimal:
        """The pre-tax part of a VAT-inclusive amount, in whole đồng: gross × 100 / (100 + rate).
        Rates of 0 or below (0 %, and the accounting codes −1 exempt, −2 not declared, −3 other)
        leave the amount as it is."""
        gross_d = gross if type(gross) is Decimal else _num(gross, "net_of_vat")
        rate_d = rate if type(rate) is int else _num(rate, "net_of_vat rate")   # as above
        if rate_d <= 0:
            return money.round_money(gross_d)
        return money.round_money(gross_d * 100 / (100 + rate_d))

    def number(self, value: Any) -> Decimal | None:
        """A Decimal from a number or numeric text; null stays null."""
        return None if value is None else _num(value, "number")

    def allocate(self, items: list[Any], weights: list[Any], total: Any,
                 field_name: str) -> list[dict[str, Any]]:
        """Copies of ``items`` with ``field_name`` set to their pro-rata share of ``total``
        (whole đồng; the remainder on the largest weight, so shares add up exactly)."""
        items, weights = items or [], weights or []     # a projection over null is null
        if len(items) != len(weights):
            raise RecordError(f"allocate: {len(items)} items but {len(weights)} weights")
        try:
            shares = money.allocate(_num(total, "allocate total"),
                                    [_num(w, "allocate weight") for w in weights])
        except money.MoneyError as exc:
            raise RecordError(f"allocate: {exc}") from None
        return [{**item, field_name: share} for item, share in zip(items, shares)]

    # -- dates ----------------------------------------------------------------------
    def local_datetime(self, value: Any) -> str:
        """ISO-8601 in the flow's time zone with its offset: 2024-06-10T10:15:22+07:00."""
        return self._local(value).isoformat(timespec="seconds")

    def local_date(self, value: Any) -> str:
        """The calendar date in the flow's time zone: 2024-06-10."""
        return self._local(value).date().isoformat()

    def local_format(self, value: Any, fmt: str) -> str:
        """strftime in the flow's time zone, e.g. '%Y-%m-%d %H:%M:%S'."""
        return self._local(value).strftime(fmt)

    def seconds_between(self, start: Any, end: Any) -> Decimal:
        """Seconds from ``start`` to ``end`` (negative when ``end`` is earlier)."""
        a, b = self._local(start), self._local(end)
        return Decimal(str((b - a).total_seconds()))

    def _local(self, value: Any):
        if type(value) is str and value:
            try:
                return _to_zone(value, self.ctx.timezone)
            except ValueError as exc:
                raise RecordError(str(exc)) from None
        if value is None or value == "":
            raise RecordError("date: expected a timestamp, got null")
        try:
            return timeutil.to_zone(value, self.ctx.timezone)
        except ValueError as exc:
            raise RecordError(str(exc)) from None

    # -- ids, lookups, checks -------------------------------------------------------
    def uuid5(self, *parts: Any) -> str:
        """A deterministic UUID from the parts (joined with '|'): same input, same id."""
        for p in parts:
            if p is None or p == "":
                raise RecordError("uuid5: a part is null or empty; ids must never be built "
                                  "from missing values")
        return _uuid5_text("|".join(map(str, parts)))

    def lookup(self, table: str, key: Any, *default: Any) -> Any:
        """The row for ``key`` in lookup table ``table``; without a default a missing key is
        an error for the record (never a guess)."""
        rows = self.ctx.tables.get(table)
        if rows is None:
            tables = ", ".join(sorted(self.ctx.tables)) or "none"
            raise RecordError(f"lookup: no lookup table named {table!r}; declare it under the "
                              f"flow's `lookups:` (tables now: {tables})")
        if key is not None:
            k = str(key)
            if k in rows:
                return rows[k]
        if default:
            return default[0]
        source = self.ctx.table_files.get(table, table)
        raise RecordError(f"lookup: {key!r} is not in table {table!r} ({source}); "
                          f"add a row for it")

    def index_by(self, items: Any, field_name: str) -> dict[str, Any]:
        """The elements of ``items`` by the text of their ``field_name`` (the last one wins)."""
        out: dict[str, Any] = {}
        for item in items or []:
            if isinstance(item, dict) and item.get(field_name) is not None:
                out[self.text(item[field_name])] = item
        return out

    def sum_by(self, items: Any, key_field: str, value_field: str) -> dict[str, Decimal]:
        """Totals of ``value_field`` per text of ``key_field`` (e.g. quantity per line id)."""
        out: dict[str, Decimal] = {}
        for item in items or []:
            if isinstance(item, dict) and item.get(key_field) is not None:
                key = self.text(item[key_field])
                out[key] = out.get(key, Decimal(0)) + _num(item.get(value_field) or 0, "sum_by")
        return out

    def take(self, items: Any, count: Any) -> list[Any]:
        """The first ``count`` elements of ``items`` (e.g. the refunds before this one)."""
        n = _num(count, "take")
        if n != n.to_integral_value() or n < 0:
            raise RecordError(f"take: expected a whole number from 0, got {count!r}")
        return list(items or [])[:int(n)]

    def until(self, items: Any, field_name: str, moment: Any) -> list[Any]:
        """The elements of ``items`` whose timestamp ``field_name`` is at or before ``moment``
        (e.g. the shipments made before a refund); an element without the timestamp is left out."""
        end = self._local(moment)
        return [item for item in items or [] if isinstance(item, dict) and item.get(field_name)
                and self._local(item[field_name]) <= end]

    def part_of(self, line: Any, before: Any, quantity: Any) -> dict[str, Any]:
        """The ``quantity`` units of a document line after the ``before`` units already taken
        (a shipment, a return): its amount, discount and total scaled by the units and rounded
        cumulatively, so the parts of a line always add up to the whole line; VAT takes what the
        total leaves (the discount, on a line without VAT), so amount − discount + VAT is the
        part's share of the total exactly."""
        if not isinstance(line, dict):
            raise RecordError("part_of: expected a line object")
        whole = _num(line.get("quantity"), "part_of quantity")
        done, part = _num(before or 0, "part_of before"), _num(quantity or 0, "part_of quantity")
        if whole <= 0 or done < 0 or part < 0 or done + part > whole:
            raise RecordError(f"part_of: {part} units after {done} of a line of {whole}")

        def share(value: Any) -> Decimal:
            total = _num(value or 0, "part_of")
            return money.round_money(total * (done + part) / whole) - money.round_money(total * done / whole)
        amount, discount = share(line.get("amount")), share(line.get("discount"))
        vat = _num(line.get("vat") or 0, "part_of")
        whole_total = _num(line.get("amount") or 0, "part_of") - _num(line.get("discount") or 0, "part_of")
        total = share(whole_total + vat)
        out = {**line, "quantity": part, "amount": amount}
        if vat == 0:          # a line without VAT keeps none: the discount takes the rounding
            return {**out, "discount": amount - total, "vat": Decimal(0)}
        return {**out, "discount": discount, "vat": total - amount + discount}

    def get(self, obj: Any, key: Any, *default: Any) -> Any:
        """``obj[key]`` for a key computed at run time (text keys); null, or ``default``,
        when absent."""
        if isinstance(obj, dict) and key is not None:
            value = obj.get(self.text(key))
            if value is not None:
                return value
        return default[0] if default else None

    def must(self, value: Any, message: str) -> Any:
        """``value``, or an error for the record with ``message`` when it is null or empty."""
        if value is None or value == "" or value == [] or value == {}:
            raise RecordError(str(message))
        return value

    def if_(self, condition: Any, then: Any, otherwise: Any) -> Any:
        """``then`` when ``condition`` is truthy (JMESPath truthiness: 0 is true), else
        ``otherwise``. Compiled expressions evaluate only the branch taken
        (jmespath_compiler); this eager form serves jmespath's own interpreter."""
        falsy = condition is None or condition is False or condition == "" \
            or condition == [] or condition == {}
        return otherwise if falsy else then

    # -- text -----------------------------------------------------------------------
    def lower(self, value: Any) -> str | None:
        return None if value is None else str(value).lower()

    def upper(self, value: Any) -> str | None:
        return None if value is None else str(value).upper()

    def trim(self, value: Any) -> str | None:
        return None if value is None else str(value).strip()

    def replace(self, value: Any, old: str, new: str) -> str | None:
        return None if value is None else str(value).replace(old, new)

    def numbered(self, code: Any, number: Any) -> str:
        """The ``number``-th of a series of codes: ``code`` itself for the first, then
        ``code_2``, ``code_3``... (a document written again for the same source record, e.g.
        the second refund of an order)."""
        if code is None or code == "":
            raise RecordError("numbered: the code is null or empty")
        n = _num(number, "numbered")
        if n != n.to_integral_value() or n < 1:
            raise RecordError(f"numbered: expected a whole number from 1, got {number!r}")
        return self.text(code) if n == 1 else f"{self.text(code)}_{int(n)}"

    def text(self, value: Any) -> str:
        """Text form; null becomes ''. Decimals print without exponent."""
        if value is None:
            return ""
        if isinstance(value, Decimal):
            return format(value, "f")
        return str(value)


def _uuid5_text(name: str) -> str:
    """``str(uuid.uuid5(ID_NAMESPACE, name))`` without building the UUID object, most of its
    cost: the SHA-1 of namespace + name, version 5 and RFC 4122 variant bits, 8-4-4-4-12 hex
    (tests/engine/test_expressions.py compares both)."""
    digest = bytearray(hashlib.sha1(_ID_NAMESPACE_BYTES + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@lru_cache(maxsize=4096)
def _to_zone(value: str, zone: str) -> Any:
    """A timestamp text in ``zone`` (an immutable datetime). Cached: a record's documents and
    lines keep converting the same few timestamps (created_at, the first fulfilment's...)."""
    return timeutil.to_zone(value, zone)


# name -> (Library method name, JMESPath signature types per argument; "*" = variadic)
FUNCTIONS: dict[str, tuple[str, list[list[str]], bool]] = {
    "money": ("money", [["number", "string"], ["number"]], False),
    "add": ("add", [["number", "string", "null"]], True),
    "sub": ("sub", [["number", "string", "null"], ["number", "string", "null"]], False),
    "mul": ("mul", [["number", "string", "null"]], True),
    "div": ("div", [["number", "string", "null"], ["number", "string", "null"]], False),
    "number": ("number", [["number", "string", "null"]], False),
    "net_of_vat": ("net_of_vat", [["number", "string"], ["number", "string"]], False),
    "allocate": ("allocate", [["array", "null"], ["array"], ["number", "string"], ["string"]], False),
    "local_datetime": ("local_datetime", [["string", "null"]], False),
    "local_date": ("local_date", [["string", "null"]], False),
    "local_format": ("local_format", [["string", "null"], ["string"]], False),
    "seconds_between": ("seconds_between", [["string", "null"], ["string", "null"]], False),
    "uuid5": ("uuid5", [[]], True),
    "lookup": ("lookup", [["string"], []], True),
    "must": ("must", [[], ["string"]], False),
    "index_by": ("index_by", [["array", "null"], ["string"]], False),
    "sum_by": ("sum_by", [["array", "null"], ["string"], ["string"]], False),
    "get": ("get", [["object", "null"], []], True),
    "take": ("take", [["array", "null"], ["number", "string"]], False),
    "until": ("until", [["array", "null"], ["string"], ["string", "null"]], False),
    "part_of": ("part_of", [["object"], ["number", "string", "null"], ["number", "string", "null"]], False),
    "if": ("if_", [[], [], []], False),
    "lower": ("lower", [["string", "null"]], False),
    "upper": ("upper", [["string", "null"]], False),
    "trim": ("trim", [["string", "null"]], False),
    "replace": ("replace", [["string", "null"], ["string"], ["string"]], False),
    "numbered": ("numbered", [["string", "number"], ["number", "string"]], False),
    "text": ("text", [[]], False),
}
# money() takes an optional second argument; JMESPath signatures cannot say "optional", so
# the variadic form is used for it below.
_OPTIONAL_TAIL = {"money": 1}


def _decimal_aware(types: tuple[str, ...]) -> tuple[str, ...]:
    return types + ("Decimal",) if "float" in types else types


def make_jmespath_functions(library: Library) -> jp_functions.Functions:
    """A jmespath Functions object with the library added and Decimal treated as a number."""

    class _Functions(jp_functions.Functions):
        def _get_allowed_pytypes(self, types):  # Decimal is a JSON number for us
            allowed, subtypes = super()._get_allowed_pytypes(types)
            return ([t for t in allowed] + (["Decimal"] if "float" in allowed else []),
                    [_decimal_aware(tuple(s)) for s in subtypes])

        def _convert_to_jmespath_type(self, pyobject):
            if pyobject == "Decimal":
                return "number"
            return super()._convert_to_jmespath_type(pyobject)

        @jp_functions.signature({"types": []})
        def _func_type(self, arg):
            if isinstance(arg, Decimal):
                return "number"
            return super()._func_type(arg)

        @jp_functions.signature({"types": []})
        def _func_to_string(self, arg):
            if type(arg) is int:      # what json.dumps writes for an int, without the encoder
                return str(arg)
            return super()._func_to_string(arg)

        @jp_functions.signature({"types": []})
        def _func_to_number(self, arg):
            if isinstance(arg, Decimal):
                return arg
            if isinstance(arg, str):
                try:
                    return money.to_decimal(arg)
                except money.MoneyError:
                    return None
            return super()._func_to_number(arg)

    table = dict(_Functions.FUNCTION_TABLE)
    for name, (method, arg_types, variadic) in FUNCTIONS.items():
        bound: Callable[..., Any] = getattr(library, method)
        signature: list[dict[str, Any]] = [{"types": list(t)} for t in arg_types]
        if name in _OPTIONAL_TAIL:
            signature = signature[:-_OPTIONAL_TAIL[name]]
            variadic = True
        if variadic:
            signature[-1] = dict(signature[-1], variadic=True)
        table[name] = {"function": (lambda fn: lambda self, *args: fn(*args))(bound),
                       "signature": signature}
    functions = _Functions()
    functions.FUNCTION_TABLE = table
    return functions


def direct_functions(library: Library) -> dict[str, tuple[Callable[..., Any], int, bool]]:
    """name → (callable, minimum number of arguments, variadic) for compiled expressions."""
    out = {}
    for name, (method, arg_types, variadic) in FUNCTIONS.items():
        minimum = len(arg_types) - _OPTIONAL_TAIL.get(name, 0)
        out[name] = (getattr(library, method), minimum, variadic or name in _OPTIONAL_TAIL)
    return out


def jinja_callables(library: Library) -> dict[str, Callable[..., Any]]:
    """The same functions for Jinja, by name (used as filters and as globals). ``if`` is left
    out: Jinja has its own ``a if cond else b``."""
    return {name: getattr(library, method) for name, (method, _, _) in FUNCTIONS.items()
            if name != "if"}


def jmespath_options(library: Library) -> jmespath.Options:
    return jmespath.Options(custom_functions=make_jmespath_functions(library))
