"""A layered left-to-right layout of a small DAG (dataset lineage, pipeline steps), drawn as SVG by templates."""

from __future__ import annotations

NODE_W, NODE_H, GAP_X, GAP_Y, MARGIN = 150, 46, 60, 18, 10


def layout(nodes: dict[str, dict], edges: list[tuple[str, str]]) -> dict:
    """Column = longest path from a root (cycles are cut); row = order of appearance within the column.

    ``nodes`` maps an id to what the template shows (label, sub, status, href); returns positioned nodes, edge
    paths and the drawing's size.
    """
    parents: dict[str, list[str]] = {key: [] for key in nodes}
    for source, target in edges:
        if source in nodes and target in nodes and source != target:
            parents[target].append(source)
    depth: dict[str, int] = {}

    def column(key: str, visiting: frozenset = frozenset()) -> int:
        if key not in depth:
            ancestors = [p for p in parents[key] if p not in visiting]
            depth[key] = 1 + max((column(p, visiting | {key}) for p in ancestors), default=-1)
        return depth[key]

    rows: dict[int, int] = {}
    placed = {}
    for key in nodes:
        col = column(key)
        row = rows.get(col, 0)
        rows[col] = row + 1
        x, y = MARGIN + col * (NODE_W + GAP_X), MARGIN + row * (NODE_H + GAP_Y)
        placed[key] = {"id": key, "x": x, "y": y, "w": NODE_W, "h": NODE_H, **nodes[key]}
    paths = []
    for target, sources in parents.items():
        for source in sources:
            a, b = placed[source], placed[target]
            x1, y1, x2, y2 = a["x"] + NODE_W, a["y"] + NODE_H / 2, b["x"], b["y"] + NODE_H / 2
            if x2 <= x1:  # an edge that goes back (a cut cycle) runs below the boxes
                x1, x2 = a["x"] + NODE_W / 2, b["x"] + NODE_W / 2
                y1, y2 = a["y"] + NODE_H, b["y"] + NODE_H
            mid = (x1 + x2) / 2
            paths.append(f"M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}")
    width = MARGIN * 2 + max((p["x"] + NODE_W for p in placed.values()), default=0)
    height = MARGIN * 2 + max((p["y"] + NODE_H for p in placed.values()), default=0)
    return {"nodes": list(placed.values()), "paths": paths, "width": width, "height": height}
