"""Small value records without dataclasses.

Role in the data flow: none of its own; the core's and the protocols'
records (runtime's Expectation, TLS's ClientHello and ServerHello) derive
from `SlotRecord` to compare and print by their fields, as a dataclass
would, without importing dataclasses (and with it inspect and ast: some
8 ms of every start-up).
"""
from __future__ import annotations


class SlotRecord:
    """Equality and repr by the fields named in the subclass's __slots__.
    Mutable, so not hashable (as a dataclass with eq)."""
    __slots__ = ()
    __hash__ = None

    def _fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        return "%s(%s)" % (type(self).__name__, ", ".join(
            "%s=%r" % (name, getattr(self, name)) for name in self.__slots__))
