"""Typed tuples without importing ``typing`` at run time (a classic cold start pays for every
module it imports; awslambdaric imports neither typing nor dataclasses).

    class RetryPolicy(Record):
        initial: float = 0.05

is ``typing.NamedTuple`` to mypy, and at run time a ``collections.namedtuple`` with the same
fields, defaults, methods and properties. Modules define annotations as strings
(``from __future__ import annotations``), so nothing here evaluates them.
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    class _RecordType(type):
        def __new__(cls, name, bases, namespace):
            if not bases:  # Record itself
                return super().__new__(cls, name, bases, namespace)
            fields = list(namespace.get("__annotations__", {}))
            defaults = [namespace[field] for field in fields if field in namespace]
            if any(field in namespace for field in fields[:len(fields) - len(defaults)]):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            base = namedtuple(name, fields, defaults=defaults, module=namespace["__module__"])
            body = {key: value for key, value in namespace.items() if key not in fields}
            return type(name, (base,), {**body, "__slots__": ()})

    class Record(metaclass=_RecordType):
        """Base of a typed tuple: fields are the class's annotations, in order."""
