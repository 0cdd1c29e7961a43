"""How read-side views look on the wire: camelCase keys, ISO-8601 times, JSON bytes.

One converter built here (not cattrs' global one) unstructures every frozen attrs view the
queries return; the resources never assemble dictionaries field by field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs
import orjson
from cattrs import Converter
from cattrs.gen import make_dict_unstructure_fn, override

from eventstore.codec import camel


def _build() -> Converter:
    converter = Converter()
    converter.register_unstructure_hook(datetime, datetime.isoformat)

    def by_camel_names(cls: type) -> Any:
        renames: dict[str, Any] = {
            a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)
        }
        return make_dict_unstructure_fn(cls, converter, **renames)

    converter.register_unstructure_hook_factory(attrs.has, by_camel_names)
    return converter


_CONVERTER = _build()


def plain(view: object) -> Any:
    """``view`` (an attrs view, or a list or dict of them) as JSON-ready values."""
    return _CONVERTER.unstructure(view)


def json_bytes(body: object) -> bytes:
    return orjson.dumps(plain(body))
