"""Bundle paging links: self, first, previous, next, last over ``_count`` + ``_getpagesoffset``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

from relearn.shared.fhir.search_parse import OFFSET_PARAM


def page_url(base: str, params: Sequence[tuple[str, str]], *, offset: int, count: int) -> str:
    """``base?params&_count=n[&_getpagesoffset=m]``."""
    query = [*params, ("_count", str(count))]
    if offset:
        query.append((OFFSET_PARAM, str(offset)))
    return f"{base}?{urlencode(query, quote_via=quote, safe=':,/')}"


def page_links(
    base: str,
    params: Sequence[tuple[str, str]],
    *,
    offset: int,
    count: int,
    total: int | None,
    page_len: int,
) -> list[dict[str, Any]]:
    """Bundle.link entries for the page at ``offset``; ``next`` while more results may follow."""
    links = [{"relation": "self", "url": page_url(base, params, offset=offset, count=count)}]
    if count == 0:
        return links
    links.append({"relation": "first", "url": page_url(base, params, offset=0, count=count)})
    if offset > 0:
        prev = max(0, offset - count)
        links.append({"relation": "previous", "url": page_url(base, params, offset=prev, count=count)})
    more = offset + count < total if total is not None else page_len == count
    if more:
        links.append({"relation": "next", "url": page_url(base, params, offset=offset + count, count=count)})
    if total is not None:
        last = (max(total - 1, 0) // count) * count
        links.append({"relation": "last", "url": page_url(base, params, offset=last, count=count)})
    return links
