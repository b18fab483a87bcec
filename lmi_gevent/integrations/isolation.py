"""Per-invocation state kept on process-wide objects, made per invocation (concurrent mode).

Libraries written for one invocation per process keep the invocation's state on objects made
once at import: Powertools' ``Logger`` keeps the request id in its formatter, ``Metrics`` its
metric set in class-level dicts, the event handler's resolvers ``current_event`` on the class.
Under the official client each slot is a process, so that is right; here every invocation in
the process shares the object, and the last one to write wins.

:class:`InvocationAttribute` turns such an attribute into one whose value belongs to the
invocation that reads it, without changing the library's code:

* a write made during an invocation is seen by that invocation only (and by what it spawns,
  which starts in a copy of its context, see :mod:`lmi_gevent.integrations.threads`);
* a write made outside invocations (at import, during init) is the process-wide value every
  invocation starts from;
* a container (dict, list, set) written at import and changed in place during an invocation
  (``log_format.update(...)``) is copied for that invocation the first time it reads it. The
  copy belongs to the container, not to the attribute, so two objects sharing one dict (a
  ``Metrics`` and its provider) keep sharing it within the invocation.

An invocation is known by its request id (:data:`lmi_gevent.invocation.context.REQUEST_ID`): a slot
runs one invocation after another in one greenlet, so the state is dropped when the id
changes. The library-specific hooks (:mod:`lmi_gevent.integrations.powertools`) are installed the
moment the handler imports the library, through the post-import hook every integration uses
(:mod:`lmi_gevent.integrations.hooks`).
"""

from __future__ import annotations

import contextvars
import copy
from collections.abc import Callable, Iterable
from typing import Any

from ..invocation.context import REQUEST_ID

Fork = Callable[[Any], Any]

class _InvocationState:
    __slots__ = ("request_id", "created", "rebound", "forks")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        # id(object) -> object: isolated objects made during the invocation; until it ends
        # nobody else can see them, so what it writes on them is their process-wide value
        self.created: dict[int, Any] = {}
        # (id(owner), name) -> (owner, value): attributes written during the invocation
        self.rebound: dict[tuple[int, str], tuple[Any, Any]] = {}
        # id(process-wide container) -> (container, the invocation's copy)
        self.forks: dict[int, tuple[Any, Any]] = {}


_STATE: contextvars.ContextVar[_InvocationState | None] = contextvars.ContextVar(
    "lmi_gevent.integrations.isolation", default=None)
# The state of each running invocation by request id, so that a greenlet the handler spawned
# (a copy of its context) that touches an isolated object first shares it with the handler.
# An entry goes when the context that made it moves to another invocation (a slot's next
# one); the bound keeps what no context came back for (spawned work only) from piling up.
_BY_REQUEST: dict[str, _InvocationState] = {}
MAX_REMEMBERED = 1024


def invocation_state() -> _InvocationState | None:
    """The running invocation's own state, or None outside invocations (import, init)."""
    request_id = REQUEST_ID.get()
    if request_id is None:
        return None
    state = _STATE.get()
    if state is None or state.request_id != request_id:
        if state is not None and _BY_REQUEST.get(state.request_id) is state:
            del _BY_REQUEST[state.request_id]  # that invocation is over in this context
        state = _BY_REQUEST.get(request_id)
        if state is None:
            state = _BY_REQUEST[request_id] = _InvocationState(request_id)
            if len(_BY_REQUEST) > MAX_REMEMBERED:
                del _BY_REQUEST[next(iter(_BY_REQUEST))]  # the oldest
        _STATE.set(state)
    return state


def shallow_fork(value: Any) -> Any:
    """The invocation's copy of a process-wide container; anything else is not copied."""
    return copy.copy(value) if type(value) in (dict, list, set) else value


def deep_fork(value: Any) -> Any:
    """As :func:`shallow_fork`, with the containers inside copied too (metric values)."""
    return copy.deepcopy(value) if type(value) in (dict, list, set) else value


_MISSING = object()


class InvocationAttribute:
    """A data descriptor for attribute ``name``: per invocation during invocations, the
    process-wide value otherwise (see the module's docstring).

    On a class whose code also assigns the attribute on the class itself
    (``BaseRouter.current_event = ...``), :func:`isolate_class_attributes` installs it on the
    metaclass too; instances without a value of their own then read the class's.
    """

    def __init__(self, name: str, fork: Fork = shallow_fork, *, class_level: bool = False
                 ) -> None:
        self.name = name
        self.fork = fork
        self.class_level = class_level
        self.class_values: dict[type, Any] = {}  # process-wide values set on classes

    # instance access (the descriptor sits in the class's __dict__)
    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            if self.class_level and owner is not None:
                return self.read_class(owner)
            return self
        value = self._read(instance, instance.__dict__)
        if value is _MISSING:
            if self.class_level:
                return self.read_class(type(instance))
            raise AttributeError(f"{type(instance).__name__!r} object has no attribute "
                                 f"{self.name!r}")
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        self._write(instance, instance.__dict__, value)

    def __delete__(self, instance: Any) -> None:
        self.__set__(instance, _MISSING)

    # class access (through the metaclass, see isolate_class_attributes)
    def read_class(self, cls: type) -> Any:
        for klass in cls.__mro__:
            store = self.class_values.get(klass)
            if store is None:
                continue
            value = self._read(klass, store)
            if value is not _MISSING:
                return value
        raise AttributeError(f"type object {cls.__name__!r} has no attribute {self.name!r}")

    def write_class(self, cls: type, value: Any) -> None:
        # Classes exist before any invocation: a write during one is always its own.
        self._write(cls, self.class_values.setdefault(cls, {}), value)

    def _read(self, owner: Any, store: dict[str, Any]) -> Any:
        state = invocation_state()
        if state is not None:
            held = state.rebound.get((id(owner), self.name))
            if held is not None:
                return held[1]  # _MISSING when deleted during the invocation
        base = store.get(self.name, _MISSING)
        if state is None or base is _MISSING:
            return base
        fork = state.forks.get(id(base))
        if fork is None:
            copied = self.fork(base)
            if copied is base:
                return base
            fork = state.forks[id(base)] = (base, copied)
        return fork[1]

    def _write(self, owner: Any, store: dict[str, Any], value: Any) -> None:
        state = invocation_state()
        if state is None or id(owner) in state.created:
            # Outside invocations, or on an object made during this one (a logger made
            # lazily, a single_metric's provider): the process-wide value.
            if value is _MISSING:
                store.pop(self.name, None)
            else:
                store[self.name] = value
            if state is not None:
                state.rebound.pop((id(owner), self.name), None)
            return
        state.rebound[(id(owner), self.name)] = (owner, value)


def isolate_attributes(cls: type, names: Iterable[str], fork: Fork = shallow_fork) -> None:
    """Make the instance attributes ``names`` of ``cls`` (and its subclasses) per invocation."""
    _register_creation(cls)
    for name in names:
        if not isinstance(cls.__dict__.get(name), InvocationAttribute):
            setattr(cls, name, InvocationAttribute(name, fork))


class _IsolatingMeta(type):
    """Base of the metaclasses made by :func:`isolate_class_attributes`: an assignment on the
    class goes to its descriptor instead of replacing it (reads need no help: the descriptor's
    ``__get__`` sees class access)."""

    def __setattr__(cls, name: str, value: Any) -> None:
        descriptor = _class_descriptor(cls, name)
        if descriptor is None:
            super().__setattr__(name, value)
        else:
            descriptor.write_class(cls, value)


def _class_descriptor(cls: type, name: str) -> InvocationAttribute | None:
    for klass in type.__getattribute__(cls, "__mro__"):
        found = type.__getattribute__(klass, "__dict__").get(name)
        if found is not None:
            return found if isinstance(found, InvocationAttribute) and found.class_level \
                else None
    return None


_METACLASSES: dict[type, type] = {}


def isolate_class_attributes(cls: type, names: Iterable[str], fork: Fork = shallow_fork
                             ) -> None:
    """Like :func:`isolate_attributes`, for attributes the library also assigns on the class
    (``Router.current_event = event``): reads and writes through the class are per invocation
    too. ``cls`` and its existing subclasses get a metaclass derived from theirs (new
    subclasses inherit it); a value already on the class becomes the process-wide one.

    The class's metaclass must be one defined in Python (``ABCMeta``, as Powertools' routers
    have): CPython refuses to change the class of a class whose metaclass is ``type``."""
    _register_creation(cls)
    meta = type(cls)
    if not issubclass(meta, _IsolatingMeta):
        derived = _METACLASSES.get(meta)
        if derived is None:
            derived = _METACLASSES[meta] = type(f"Isolating{meta.__name__}",
                                                (_IsolatingMeta, meta), {})
        for klass in _with_subclasses(cls):
            if type(klass) is meta:
                klass.__class__ = derived
    for name in names:
        current = cls.__dict__.get(name, _MISSING)
        if isinstance(current, InvocationAttribute):
            continue
        descriptor = InvocationAttribute(name, fork, class_level=True)
        if current is not _MISSING:
            descriptor.class_values[cls] = {name: current}
        type.__setattr__(cls, name, descriptor)


def _register_creation(cls: type) -> None:
    """Have instances of ``cls`` made during an invocation noted in its state (``created``)."""
    original: Any = cls.__new__
    if getattr(original, "lmi_gevent_registers", False):
        return

    def __new__(klass: type, *args: Any, **kwargs: Any) -> Any:
        # object.__new__ refuses the constructor's arguments once __new__ is overridden
        instance = (object.__new__(klass) if original is object.__new__
                    else original(klass, *args, **kwargs))
        state = invocation_state()
        if state is not None:
            state.created[id(instance)] = instance
        return instance

    __new__.lmi_gevent_registers = True  # type: ignore[attr-defined]
    type.__setattr__(cls, "__new__", staticmethod(__new__))


def _with_subclasses(cls: type) -> list[type]:
    found, queue = [], [cls]
    while queue:
        klass = queue.pop()
        if klass not in found:
            found.append(klass)
            queue.extend(type.__getattribute__(klass, "__subclasses__")())
    return found
