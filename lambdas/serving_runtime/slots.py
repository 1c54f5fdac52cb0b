"""Which GPU slot holds which tenant's adapter: least recently used out, no torch needed.

The batched LoRA layers (`batched_lora.py`) keep `capacity` adapter slots on the GPU. A batch names one
adapter per row; `SlotTable.assign` answers the slot of every row and the adapters that must be paged in
from host memory first. Adapters of the batch being assigned are never evicted to make room for each other.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field


class TooManyAdaptersError(ValueError):
    """A batch names more distinct adapters than the GPU has slots."""


@dataclass(frozen=True)
class Assignment:
    rows: list[int]  # slot of each row, in row order
    page_ins: list[tuple[str, int]]  # (adapter id, slot) to copy from host memory before the forward pass
    evicted: list[str] = field(default_factory=list)


class SlotTable:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: needs at least one slot, got {capacity}")
        self.capacity = capacity
        self._slots: OrderedDict[str, int] = OrderedDict()  # least recently used first

    def __contains__(self, adapter_id: object) -> bool:
        return adapter_id in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def resident(self) -> dict[str, int]:
        return dict(self._slots)

    def assign(self, adapter_ids: Sequence[str]) -> Assignment:
        distinct = list(dict.fromkeys(adapter_ids))
        if len(distinct) > self.capacity:
            raise TooManyAdaptersError(
                f"adapter_ids: a batch names {len(distinct)} distinct adapters, the GPU holds {self.capacity}; "
                "split the batch or raise the slot count"
            )
        for adapter_id in distinct:  # touch the batch's residents first so that they are not evicted
            if adapter_id in self._slots:
                self._slots.move_to_end(adapter_id)
        free = sorted(set(range(self.capacity)) - set(self._slots.values()), reverse=True)
        page_ins: list[tuple[str, int]] = []
        evicted: list[str] = []
        for adapter_id in distinct:
            if adapter_id in self._slots:
                continue
            if free:
                slot = free.pop()
            else:
                victim, slot = self._slots.popitem(last=False)
                evicted.append(victim)
            self._slots[adapter_id] = slot
            page_ins.append((adapter_id, slot))
        return Assignment([self._slots[a] for a in adapter_ids], page_ins, evicted)

    def evict(self, adapter_id: str) -> int | None:
        return self._slots.pop(adapter_id, None)
