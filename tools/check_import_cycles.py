"""Fail when two modules of the package import each other, directly or round a longer circle.

Every import statement counts, lazy ones inside functions and `TYPE_CHECKING` blocks included: grimp
reads them all from the source, and a circle hidden in a function body is still a circle a reader must
untangle. `lint-imports` checks the direction between layers; this checks the modules inside them."""

from __future__ import annotations

import sys

import grimp
import networkx as nx

PACKAGES = ("bench", "reports", "harness", "converters", "profiles")


def import_cycles() -> tuple[int, list[list[str]]]:
    """The number of modules, and each import circle among them (shortest first)."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    edges = nx.DiGraph()
    for module in graph.modules:
        edges.add_node(module)
        for imported in graph.find_modules_directly_imported_by(module):
            edges.add_edge(module, imported)
    circles = sorted((cycle for cycle in nx.simple_cycles(edges)), key=len)
    return edges.number_of_nodes(), circles


def main() -> int:
    count, circles = import_cycles()
    if not circles:
        print(f"no import cycle among {count} modules (lazy and TYPE_CHECKING imports included)")
        return 0
    for circle in circles:
        print("import cycle: " + " -> ".join([*circle, circle[0]]))
    return 1


if __name__ == "__main__":
    sys.exit(main())
