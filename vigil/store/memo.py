"""What the history reads remember: one object per open store (`PerStore`), and a least-recently-used
map bounded in bytes (`ByteLru`), which the series caches build on."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from vigil.store.client import Store

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class PerStore(Generic[T]):
    """`of(store)`: this store's object, made by `make` the first time it is asked for, gone with the store."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._objects: weakref.WeakKeyDictionary[Store, T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __call__(self, store: Store) -> T:
        with self._lock:
            found = self._objects.get(store)
            if found is None:
                found = self._objects[store] = self._make()
            return found

    def clear(self) -> None:
        """Forget every store's object (a test starting with nothing remembered)."""
        with self._lock:
            self._objects.clear()


class ByteLru(Generic[K, V]):
    """Values by key, at most `max_bytes` in all as the caller sizes them, least recently used out first.
    Subclasses call `_get` and `_put` under `_lock`; `_dropped` hears of each key pushed out."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def _get(self, key: K) -> tuple[V] | None:
        """(value,) for a key held, now the most recently used; None for one not held."""
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries.move_to_end(key)
        return (found[0],)

    def _put(self, key: K, value: V, size: int) -> bool:
        """Hold `value` for `key` (replacing what it held); False where it alone passes `max_bytes`."""
        self._pop(key)
        if size > self.max_bytes:
            return False
        while self._entries and self._bytes + size > self.max_bytes:
            dropped, (_, freed) = self._entries.popitem(last=False)
            self._bytes -= freed
            self._dropped(dropped)
        self._entries[key] = (value, size)
        self._bytes += size
        return True

    def _pop(self, key: K) -> bool:
        old = self._entries.pop(key, None)
        if old is None:
            return False
        self._bytes -= old[1]
        self._dropped(key)
        return True

    def _dropped(self, key: K) -> None:
        """A key no longer held."""
