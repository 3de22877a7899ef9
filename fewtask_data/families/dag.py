"""The WordNet DAG of a class set (Meta-Dataset's ``imagenet_specification.py``): the
classes plus all their hypernym ancestors, single-child chains collapsed, each node's
leaf span, depths and the depth-first leaf order. Pure functions of a class list and a
``Taxonomy``; `hierarchy` builds splits and families on top of it."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable, Mapping, Protocol, Sequence

from fewtask_data.errors import FewtaskError


class Taxonomy(Protocol):
    def parents(self, wnid: str) -> Sequence[str]: ...

    def lemma(self, wnid: str) -> str: ...


# ---------------------------------------------------------------------------------------
# Hierarchy


@dataclass(frozen=True)
class Hierarchy:
    """The collapsed DAG over a class set (see module doc)."""

    classes: frozenset[str]
    children: Mapping[str, tuple[str, ...]]  # node -> sorted children
    parents: Mapping[str, tuple[str, ...]]  # node -> sorted parents
    roots: tuple[str, ...]
    spans: Mapping[str, frozenset[str]]  # node -> classes at or below it
    depth: Mapping[str, int]  # shortest distance from a root in the collapsed DAG
    leaf_order: tuple[str, ...]  # depth-first order of the classes

    @property
    def internal(self) -> tuple[str, ...]:
        """Nodes with children, sorted by wnid."""
        return tuple(sorted(n for n, kids in self.children.items() if kids))


def ancestors_closure(classes: Iterable[str], taxonomy: Taxonomy) -> dict[str, tuple[str, ...]]:
    """node -> parents for the classes and all their hypernym ancestors."""
    graph: dict[str, tuple[str, ...]] = {}
    todo = sorted(set(classes))
    while todo:
        node = todo.pop()
        if node in graph:
            continue
        graph[node] = tuple(sorted(taxonomy.parents(node)))
        todo.extend(p for p in graph[node] if p not in graph)
    return graph


def _ancestor_sets(graph: Mapping[str, Sequence[str]]) -> dict[str, frozenset[str]]:
    """node -> itself and all its ancestors in graph."""

    @functools.lru_cache(maxsize=None)
    def up(node: str) -> frozenset[str]:
        out = {node}
        for parent in graph.get(node, ()):
            out |= up(parent)
        return frozenset(out)

    return {node: up(node) for node in graph}


def collapse(parents: Mapping[str, Sequence[str]], keep: frozenset[str]) -> dict[str, set[str]]:
    """Remove single-child nodes (never those in keep) until none is left; returns
    node -> parents. Deterministic: each pass visits nodes in wnid order."""
    up = {n: set(ps) & parents.keys() for n, ps in parents.items()}
    down: dict[str, set[str]] = {n: set() for n in up}
    for node, ps in up.items():
        for p in ps:
            down[p].add(node)
    while True:
        single = sorted(n for n, kids in down.items() if len(kids) == 1 and n not in keep)
        if not single:
            return up
        for node in single:
            if node not in down or len(down[node]) != 1:
                continue  # changed earlier in this pass
            (child,) = down[node]
            up[child].discard(node)
            for p in up[node]:
                down[p].discard(node)
                down[p].add(child)
                up[child].add(p)
            del up[node], down[node]


def build_hierarchy(classes: Iterable[str], taxonomy: Taxonomy, roots: Sequence[str] = ()) -> Hierarchy:
    """The collapsed hierarchy of classes; with roots, only ancestors at or below a root
    are kept (how Meta-Dataset builds its validation and test subgraphs)."""
    classes = frozenset(classes)
    if not classes:
        raise FewtaskError("cannot build a hierarchy of zero classes; check the class list or split roots")
    graph = ancestors_closure(classes, taxonomy)
    if roots:
        lineage = _ancestor_sets(graph)
        wanted = set(roots)
        graph = {n: ps for n, ps in graph.items() if n in classes or lineage[n] & wanted}
    up = collapse(graph, keep=classes)
    children = {n: [] for n in up}
    for node, ps in up.items():
        for p in ps:
            children[p].append(node)
    children_t = {n: tuple(sorted(kids)) for n, kids in children.items()}
    parents_t = {n: tuple(sorted(ps)) for n, ps in up.items()}
    top = tuple(sorted(n for n, ps in parents_t.items() if not ps))
    return Hierarchy(
        classes=classes,
        children=children_t,
        parents=parents_t,
        roots=top,
        spans=_spans(children_t, classes),
        depth=_depths(children_t, top),
        leaf_order=_leaf_order(children_t, top, classes),
    )


def _spans(children: Mapping[str, Sequence[str]], classes: frozenset[str]) -> dict[str, frozenset[str]]:
    @functools.lru_cache(maxsize=None)
    def span(node: str) -> frozenset[str]:
        out = {node} if node in classes else set()
        for kid in children[node]:
            out |= span(kid)
        return frozenset(out)

    return {n: span(n) for n in children}


def _depths(children: Mapping[str, Sequence[str]], roots: Sequence[str]) -> dict[str, int]:
    depth = {r: 0 for r in roots}
    frontier = list(roots)
    while frontier:
        nxt = []
        for node in frontier:
            for kid in children[node]:
                if kid not in depth:
                    depth[kid] = depth[node] + 1
                    nxt.append(kid)
        frontier = nxt
    return depth


def _leaf_order(children: Mapping[str, Sequence[str]], roots: Sequence[str], classes: frozenset[str]) -> tuple[str, ...]:
    seen: set[str] = set()
    order: list[str] = []
    stack = list(reversed(roots))
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node in classes:
            order.append(node)
        stack.extend(reversed(children[node]))
    return tuple(order)


# ---------------------------------------------------------------------------------------
# Split presets
