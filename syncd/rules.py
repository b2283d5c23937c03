"""The `when` expression of a flow: parsed once at load, evaluated safely, never with `eval`.

The language is a small subset of Python's expression syntax, so it reads the way operators expect:

    stage == 'closedwon' and amount > 10000 and tier in ('Enterprise', 'Strategic')

Allowed: names, string/number/boolean/None literals (`true`, `false`, `null` too), lists and tuples of
literals, comparisons (`== != < <= > >= in`, `not in`, chains), `and`, `or`, `not`, parentheses and unary
minus. Anything else (calls, attributes, subscripts, arithmetic) is rejected at load with the position.

Evaluation is total: it never raises. A name the deal does not have is None. Comparing a number with a
string converts the string when it is numeric (CRMs send numbers as strings), and a boolean with the
string "true" or "false" (HubSpot sends booleans so); an ordering comparison
that cannot be decided (None, or a non-numeric string against a number) is false.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

CONSTANT_NAMES = {"true": True, "false": False, "null": None, "none": None, "True": True, "False": False}
ORDERING: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.Compare,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
)


class RuleError(ValueError):
    """The expression is not in the rule language; the message says where and why."""


@dataclass(frozen=True)
class Rule:
    source: str
    tree: ast.Expression = field(compare=False)  # parsed from `source`: two rules are equal by their text
    names: frozenset[str]

    def evaluate(self, values: Mapping[str, Any]) -> bool:
        return truth(_eval(self.tree.body, values))

    def explain(self, values: Mapping[str, Any]) -> list[str]:
        """Each comparison of the rule with the values it saw and its result, for `syncd explain`."""
        lines = []
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Compare):
                text = ast.get_source_segment(self.source.strip(), node) or ast.unparse(node)
                seen = ", ".join(
                    f"{n.id}={_eval(n, values)!r}"
                    for n in ast.walk(node)
                    if isinstance(n, ast.Name) and n.id not in CONSTANT_NAMES
                )
                verdict = "true" if _eval(node, values) else "false"
                lines.append(f"{text}  [{seen or 'literals only'}] -> {verdict}")
        return lines


def parse(source: str) -> Rule:
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise RuleError(f"{exc.msg} at column {exc.offset}") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ALLOWED):
            where = f" at column {node.col_offset + 1}" if hasattr(node, "col_offset") else ""
            raise RuleError(
                f"{type(node).__name__.lower()} is not allowed{where}; use names, literals, "
                "comparisons, 'in', 'and', 'or' and 'not'"
            )
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and not (isinstance(node.operand, ast.Constant) and _is_number(node.operand.value))
        ):
            raise RuleError(f"unary minus applies to number literals only (column {node.col_offset + 1})")
        if isinstance(node, ast.Name) and node.id not in CONSTANT_NAMES:
            names.add(node.id)
    return Rule(source=source, tree=tree, names=frozenset(names))


def truth(value: Any) -> bool:
    """Truthiness as a CRM means it: the strings 'false', '0', 'no' and '' are false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no")
    return bool(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _eval(node: ast.AST, values: Mapping[str, Any]) -> Any:
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name):
            return CONSTANT_NAMES[name] if name in CONSTANT_NAMES else values.get(name)
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            return [_eval(e, values) for e in elts]
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_eval(operand, values)
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return not truth(_eval(operand, values))
        case ast.BoolOp(op=ast.And(), values=operands):
            return all(truth(_eval(o, values)) for o in operands)
        case ast.BoolOp(op=ast.Or(), values=operands):
            return any(truth(_eval(o, values)) for o in operands)
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            current = _eval(left, values)
            for op, comparator in zip(ops, comparators, strict=True):
                other = _eval(comparator, values)
                if not compare(op, current, other):
                    return False
                current = other
            return True
    raise AssertionError(f"parse() let {ast.dump(node)} through")  # pragma: no cover


def compare(op: ast.cmpop, left: Any, right: Any) -> bool:
    if isinstance(op, ast.In | ast.NotIn):
        if isinstance(right, str) and isinstance(left, str):
            found = left in right
        elif isinstance(right, list):
            found = any(_equal(left, item) for item in right)
        else:
            found = False
        return found if isinstance(op, ast.In) else not found
    if isinstance(op, ast.Eq):
        return _equal(left, right)
    if isinstance(op, ast.NotEq):
        return not _equal(left, right)
    left, right = _coerce(left, right)
    if left is None or right is None or type(left) is not type(right):
        return False
    return ORDERING[type(op)](left, right)


def _equal(left: Any, right: Any) -> bool:
    left, right = _coerce(left, right)
    return bool(left == right)


def _coerce(left: Any, right: Any) -> tuple[Any, Any]:
    """Make a number and a numeric string comparable, and a boolean and HubSpot's string booleans ("true",
    "false"); leave everything else as it is."""
    if isinstance(left, bool) and isinstance(right, str):
        return left, _boolean(right)
    if isinstance(left, str) and isinstance(right, bool):
        return _boolean(left), right
    if _is_number(left) and isinstance(right, str):
        return float(left), _number(right)
    if isinstance(left, str) and _is_number(right):
        return _number(left), float(right)
    if _is_number(left) and _is_number(right):
        return float(left), float(right)
    return left, right


def _boolean(text: str) -> bool | str:
    """HubSpot sends boolean properties as the strings "true" and "false" (`hs_is_closed_won`)."""
    return {"true": True, "false": False}.get(text.strip().lower(), text)


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text
