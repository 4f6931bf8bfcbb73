"""Element paths over a resource's JSON dict: ``component.code``, ``effective[x]``.

A path is dotted element names; arrays are flattened at every step, and a trailing ``[x]``
on a name matches every choice element (``effective[x]`` → ``effectiveDateTime``,
``effectivePeriod`` ...). Primitive extensions (``_status``) are never matched.
"""

from __future__ import annotations

from typing import Any


def _children(node: Any, name: str) -> list[Any]:
    if not isinstance(node, dict):
        return []
    if name.endswith("[x]"):
        stem = name[:-3]
        return [v for k, v in node.items() if k.startswith(stem) and k[len(stem) : len(stem) + 1].isupper()]
    return [node[name]] if name in node else []


def _flatten(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, list):
            out.extend(v)
        elif v is not None:
            out.append(v)
    return out


def values_at(resource: dict[str, Any], path: str) -> list[Any]:
    """Every value at ``path`` (arrays flattened, missing elements skipped)."""
    nodes: list[Any] = [resource]
    for name in path.split("."):
        nodes = _flatten([child for node in nodes for child in _children(node, name)])
        if not nodes:
            break
    return nodes
