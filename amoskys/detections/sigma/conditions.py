"""A rule's condition tree (pySigma's, with the detections resolved into field = value leaves) as one
Python matcher: and/or/not nest as closures, the values of one field under an OR are grouped into one
leaf, cheap tests run first.

The tree is first normalized into `Node`s, which `index` also reads to find the executable names a rule
can only match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import SigmaCIDRExpression, SigmaExpansion, SigmaRegularExpression, SigmaString, SigmaType

from amoskys.detections.sigma.compile import (
    Matcher,
    UnsupportedRule,
    all_of,
    any_of,
    negate,
    string_test,
    value_matchers,
)

#: Field-less values (keywords) are searched in the command line.
KEYWORD_FIELD = "CommandLine"

Tree = ConditionItem | ConditionFieldEqualsValueExpression | ConditionValueExpression


@dataclass(slots=True)
class Leaf:
    """Values of one field, OR-linked (a keyword leaf searches KEYWORD_FIELD)."""

    field: str
    values: list[SigmaType]
    keyword: bool = False


@dataclass(slots=True)
class And:
    children: list[Node] = field(default_factory=list)


@dataclass(slots=True)
class Or:
    children: list[Node] = field(default_factory=list)


@dataclass(slots=True)
class Not:
    child: Node


Node = Leaf | And | Or | Not


def normalize(tree: Tree | None) -> Node:
    """pySigma's condition tree as Nodes: nested and/or flattened, same-field leaves under an OR merged."""
    if tree is None:
        raise UnsupportedRule("the condition is empty")
    if isinstance(tree, ConditionFieldEqualsValueExpression):
        return Leaf(tree.field, [tree.value])
    if isinstance(tree, ConditionValueExpression):
        return Leaf(KEYWORD_FIELD, [tree.value], keyword=True)
    if isinstance(tree, ConditionNOT):
        return Not(normalize(_only(tree.args)))
    if isinstance(tree, ConditionAND):
        children: list[Node] = []
        for arg in tree.args:
            child = normalize(_tree(arg))
            children.extend(child.children if isinstance(child, And) else [child])
        return children[0] if len(children) == 1 else And(children)
    if isinstance(tree, ConditionOR):
        merged: list[Node] = []
        leaves: dict[tuple[str, bool], Leaf] = {}
        for arg in tree.args:
            child = normalize(_tree(arg))
            for c in child.children if isinstance(child, Or) else [child]:
                if isinstance(c, Leaf):
                    key = (c.field, c.keyword)
                    if key in leaves:
                        leaves[key].values.extend(c.values)
                        continue
                    c = Leaf(c.field, list(c.values), c.keyword)
                    leaves[key] = c
                merged.append(c)
        return merged[0] if len(merged) == 1 else Or(merged)
    raise UnsupportedRule(f"condition element {type(tree).__name__} is not supported")


def _tree(arg: object) -> Tree:
    if isinstance(arg, ConditionItem | ConditionFieldEqualsValueExpression | ConditionValueExpression):
        return arg
    raise UnsupportedRule(f"condition element {type(arg).__name__} is not supported")


def _only(args: Sequence[object]) -> Tree:
    if len(args) != 1:
        raise UnsupportedRule("'not' takes one operand")
    return _tree(args[0])


def fields_used(node: Node) -> set[str]:
    """The fields a node reads (a field reference's other field included)."""
    if isinstance(node, Leaf):
        out = {node.field}
        for value in _flat(node.values):
            other = getattr(value, "field", None)
            if isinstance(other, str):
                out.add(other)
        return out
    if isinstance(node, Not):
        return fields_used(node.child)
    return set().union(*(fields_used(c) for c in node.children))


def _flat(values: Sequence[SigmaType]) -> list[SigmaType]:
    out: list[SigmaType] = []
    for value in values:
        out.extend(_flat(value.values) if isinstance(value, SigmaExpansion) else [value])
    return out


def cost(node: Node) -> float:
    """A rough relative cost, so an AND tries its cheap children first (and fails early)."""
    if isinstance(node, Leaf):
        total = 0.0
        for value in _flat(node.values):
            if isinstance(value, SigmaString):
                total += 0.2 if string_test(value, keyword=node.keyword).kind != "glob" else 3.0
            elif isinstance(value, SigmaRegularExpression):
                total += 4.0
            elif isinstance(value, SigmaCIDRExpression):
                total += 2.0
            else:
                total += 0.5
        return 1.0 + total
    if isinstance(node, Not):
        return cost(node.child)
    return sum(cost(c) for c in node.children)


def compile_node(node: Node) -> Matcher:
    """The matcher of a node (raises UnsupportedRule for values the engine cannot evaluate)."""
    if isinstance(node, Leaf):
        return any_of(value_matchers(node.field, node.values, keyword=node.keyword))
    if isinstance(node, Not):
        return negate(compile_node(node.child))
    children = sorted(node.children, key=cost)
    matchers = [compile_node(c) for c in children]
    return all_of(matchers) if isinstance(node, And) else any_of(matchers)
