"""Records declared as ``typing.NamedTuple`` classes, without importing ``typing``.

``typing`` costs every command's start a few milliseconds (it imports ``contextlib``,
``collections.abc`` and builds its special forms), and the shell tools need none of
it at run time. Modules on their path write ``from hyper.records import NamedTuple``
and declare records as usual::

    class Selector(NamedTuple):
        id: int
        indices: tuple[int, ...] | None = None

Type checkers see ``typing.NamedTuple``; at run time the class is made by
``collections.namedtuple`` from the annotated fields and their defaults, with the
class's own methods, properties and docstring, as ``typing.NamedTuple`` makes it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import NamedTuple as NamedTuple
else:
    import collections

    # what typing.NamedTuple refuses in a record's body, and what it does not copy
    _PROHIBITED = frozenset(
        {"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults",
         "_make", "_replace", "_asdict", "_source"}
    )  # fmt: skip
    _SPECIAL = frozenset({"__module__", "__name__", "__annotations__"})

    class _RecordMaker(type):
        def __new__(mcs, name, bases, namespace):
            if namespace.get("_is_base"):
                return super().__new__(mcs, name, bases, namespace)
            annotations = namespace.get("__annotations__", {})
            fields = list(annotations)
            defaults = [namespace[field] for field in fields if field in namespace]
            record = collections.namedtuple(
                name, fields, defaults=defaults, module=namespace.get("__module__")
            )
            record.__annotations__ = dict(annotations)
            for key, value in namespace.items():
                if key in _PROHIBITED:
                    raise AttributeError(f"cannot overwrite NamedTuple attribute {key}")
                if key not in _SPECIAL and key not in record._fields:
                    setattr(record, key, value)
            return record

    class NamedTuple(metaclass=_RecordMaker):
        _is_base = True
