"""Serve many tenants' LoRA adapters from one GPU with mixed-tenant batches (PyTorch, in process).

Every targeted projection of the base model becomes a `StackedLoraLinear` of a `LoraGroup`: the adapters of
all resident tenants are stacked as A [slots, in, r] and B [slots, r, out] on the GPU. Each batch gathers its
rows' A and B by slot once, and every forward pass adds (x @ A[row]) @ B[row] with one batched matrix product
per factor, however many tenants the batch mixes (peft's `adapter_names` loops over the adapters present
instead). Projections that read the same input (q, k, v) form one group: one GEMM over their concatenated
base weights and one pair of batched products for all three. Ranks below the maximum are zero-padded, and
the adapter's scale is folded into B when it is copied in.

Adapters live in pinned host memory, one flat buffer each; `MultiLoraModel.assign` pages missing ones into
GPU slots (least recently used out, `slots.SlotTable`) before the batch runs. The same adapter files the
LMI container loads (`adapter_format.py`) are read here, so bench/gpu measures what the pipeline produces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from serving_runtime.adapter_format import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    AdapterFormatError,
    AdapterSpec,
    lora_weight_key,
    parse_adapter_config,
)
from serving_runtime.slots import SlotTable

# Projections that read the same hidden state run as one group: one GEMM with their concatenated base
# weights and one set of LoRA products for all of them (A side by side, B block-diagonal).
SHARED_INPUT = (frozenset({"q_proj", "k_proj", "v_proj"}), frozenset({"gate_proj", "up_proj"}))

# Batches of up to this many rows fold their rows' A into the group's GEMM (see `LoraGroup`).
DEFAULT_FOLD_ROWS = 32


class LoraGroup(nn.Module):
    """The stacked adapters of the projections of one module that share their input.

    A [slots, members * r, in] (peft's [r, in] per member, side by side); B [slots, members * r, sum of outs],
    block-diagonal (member i's B at rows i*r.., columns of its own output). The members' base weights become
    views of one concatenated matrix, which has `fold_rows * members * r` spare rows below them.

    Eager decoding is bound by the host (Python and kernel launches, not the GPU's arithmetic), so the rows'
    deltas cost what their launches cost. A batch of at most `fold_rows` rows writes each row's A into the
    spare rows once per batch; then ONE GEMM yields the base output and every row's x @ A (row i reads its
    own block through a strided view) and one in-place batched product adds (x @ A) @ B: two launches per
    group, as many as the merged model's separate q, k, v and o projections take per layer. The spare rows
    cost `rows * members * r` extra output columns (a quarter of q/k/v's at 32 rows of rank 16), so larger
    batches use two batched products instead (x @ A[row], then @ B[row]).
    """

    def __init__(self, bases: list[nn.Linear], *, slots: int, rank: int, fold_rows: int) -> None:
        super().__init__()
        self.rank = rank
        self.width = len(bases) * rank
        self.fold_rows = fold_rows
        like = bases[0].weight
        self.offsets = [0]
        for base in bases:
            self.offsets.append(self.offsets[-1] + base.out_features)
        self.out_features = self.offsets[-1]
        spare = fold_rows * self.width
        with torch.no_grad():
            weight = torch.cat([*(b.weight for b in bases), like.new_zeros(spare, bases[0].in_features)])
            bias = (
                torch.cat(
                    [
                        *(b.bias if b.bias is not None else like.new_zeros(b.out_features) for b in bases),
                        like.new_zeros(spare),
                    ]
                )
                if any(b.bias is not None for b in bases)
                else None
            )
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        for index, base in enumerate(bases):  # one copy of the weights: the originals become views
            base.weight = nn.Parameter(
                self.weight.data[self.offsets[index] : self.offsets[index + 1]], requires_grad=False
            )
        self.a = nn.Parameter(
            torch.zeros(slots, self.width, bases[0].in_features, dtype=like.dtype, device=like.device),
            requires_grad=False,
        )
        self.b = nn.Parameter(
            torch.zeros(slots, self.width, self.out_features, dtype=like.dtype, device=like.device),
            requires_grad=False,
        )
        # Plain attributes (not nn.Module lookups) for what every forward pass reads.
        self._base = (
            self.weight.data[: self.out_features],
            None if bias is None else bias[: self.out_features],
        )
        self._spare = self.weight.data[self.out_features :].view(fold_rows, self.width, bases[0].in_features)
        self.gathered: _Folded | _Batched | None = None
        self._x: torch.Tensor | None = None
        self._y: torch.Tensor | None = None

    def gather(self, slots: torch.Tensor | None) -> None:
        """Each row's A and B, gathered once per batch (a batch keeps its rows for every decoding step)."""
        self._x = self._y = None
        if slots is None:
            self.gathered = None
            return
        rows = slots.numel()
        b = self.b.index_select(0, slots)
        if rows <= self.fold_rows:
            torch.index_select(self.a, 0, slots, out=self._spare[:rows])
            columns = self.out_features + rows * self.width
            bias = None if self.bias is None else self.bias.data[:columns]
            self.gathered = _Folded(rows, self.weight.data[:columns], bias, b)
        else:
            self.gathered = _Batched(self.a.index_select(0, slots).transpose(1, 2), b)

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """Base output plus every row's LoRA delta for all members (in its first `out_features` columns,
        possibly followed by scratch columns); computed once per input."""
        if x is self._x:
            assert self._y is not None
            return self._y
        gathered = self.gathered
        if gathered is None:
            y = nn.functional.linear(x, *self._base)
        elif isinstance(gathered, _Folded):
            y = nn.functional.linear(x, gathered.weight, gathered.bias)
            flat = y.view(-1, y.shape[-1])
            rows, columns, width, out = gathered.rows, y.shape[-1], self.width, self.out_features
            seq = flat.shape[0] // rows
            if seq * rows != flat.shape[0]:
                raise ValueError(
                    f"input: {flat.shape[0]} token rows do not split into the batch's {rows} rows"
                )
            xa = flat.as_strided(
                (rows, seq, width), (seq * columns + width, columns, 1), flat.storage_offset() + out
            )
            flat[:, :out].view(rows, seq, out).baddbmm_(xa, gathered.b)
        else:
            y = nn.functional.linear(x, *self._base)
            rows = x.shape[0]
            xa = torch.bmm(x.reshape(rows, -1, x.shape[-1]), gathered.a)
            y = torch.baddbmm(y.reshape(rows, -1, y.shape[-1]), xa, gathered.b).reshape(y.shape)
        self._x, self._y = x, y
        return y

    def a_slot(self, slot: int, member: int) -> torch.Tensor:
        return self.a.data[slot, member * self.rank : (member + 1) * self.rank]

    def b_slot(self, slot: int, member: int) -> torch.Tensor:
        rows = slice(member * self.rank, (member + 1) * self.rank)
        return self.b.data[slot, rows, self.offsets[member] : self.offsets[member + 1]]


@dataclass(frozen=True)
class _Folded:
    rows: int
    weight: torch.Tensor  # base weights and the rows' A below them
    bias: torch.Tensor | None
    b: torch.Tensor  # [rows, members * r, out]


@dataclass(frozen=True)
class _Batched:
    a: torch.Tensor  # [rows, in, members * r]
    b: torch.Tensor  # [rows, members * r, out]


class StackedLoraLinear(nn.Module):
    """One projection of a `LoraGroup`: its slice of the group's output (a view, no copy)."""

    def __init__(self, base: nn.Linear, *, group: LoraGroup, member: int) -> None:
        super().__init__()
        self.base = base
        self.group = group
        self.member = member
        self.in_features, self.out_features = base.in_features, base.out_features
        self._lo, self._hi = group.offsets[member], group.offsets[member + 1]
        self._output = group.output  # a plain attribute: no nn.Module lookup per call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._output(x)
        return y if self._lo == 0 and y.shape[-1] == self._hi else y[..., self._lo : self._hi]


@dataclass
class HostAdapter:
    """One adapter in pinned host memory: a flat buffer and, per stacked layer, its (A, B) views."""

    buffer: torch.Tensor
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @property
    def nbytes(self) -> int:
        return self.buffer.numel() * self.buffer.element_size()


class MultiLoraModel:
    def __init__(
        self,
        model: nn.Module,
        *,
        target_modules: Sequence[str],
        max_rank: int,
        gpu_slots: int,
        fold_rows: int = DEFAULT_FOLD_ROWS,
    ) -> None:
        self.model = model
        self.max_rank = max_rank
        self.targets = frozenset(target_modules)
        self.layers: dict[str, StackedLoraLinear] = {}
        self.groups: list[LoraGroup] = []
        found: dict[tuple[str, frozenset[str] | str], list[tuple[str, nn.Linear]]] = {}
        for name, module in list(model.named_modules()):
            parent_name, _, leaf = name.rpartition(".")
            if isinstance(module, nn.Linear) and leaf in self.targets:
                shared = next((s for s in SHARED_INPUT if leaf in s), leaf)
                found.setdefault((parent_name, shared), []).append((name, module))
        if not found:
            raise ValueError(f"target_modules: none of {sorted(self.targets)} is a linear layer of the model")
        for (parent_name, _), members in found.items():
            group = LoraGroup(
                [module for _, module in members], slots=gpu_slots, rank=max_rank, fold_rows=fold_rows
            )
            self.groups.append(group)
            for index, (name, module) in enumerate(members):
                stacked = StackedLoraLinear(module, group=group, member=index)
                setattr(model.get_submodule(parent_name), name.rpartition(".")[2], stacked)
                self.layers[name] = stacked
        self.table = SlotTable(gpu_slots)
        self.host: dict[str, HostAdapter] = {}
        self.dtype, self.device = self.groups[0].a.dtype, self.groups[0].a.device

    # ---- adapters into host memory -----------------------------------------------------------------

    def load_adapter_dir(self, adapter_id: str, directory: Path) -> HostAdapter:
        """Read a peft adapter folder (the registered artifact's layout) into host memory."""
        from safetensors.torch import load_file

        spec = parse_adapter_config(json.loads((directory / ADAPTER_CONFIG).read_text(encoding="utf-8")))
        return self.add_adapter(adapter_id, spec, load_file(str(directory / ADAPTER_WEIGHTS)))

    def add_adapter(
        self, adapter_id: str, spec: AdapterSpec, tensors: Mapping[str, torch.Tensor]
    ) -> HostAdapter:
        if spec.rank > self.max_rank:
            raise AdapterFormatError(
                f"{ADAPTER_CONFIG}.r: {spec.rank} is above the runtime's maximum {self.max_rank}"
            )
        if not set(spec.target_modules) <= self.targets:
            raise AdapterFormatError(
                f"{ADAPTER_CONFIG}.target_modules: {sorted(set(spec.target_modules) - self.targets)} not served "
                f"(served: {sorted(self.targets)})"
            )
        pairs: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in tensors.items():
            module, factor = lora_weight_key(key)
            if module not in self.layers:
                raise AdapterFormatError(
                    f"{ADAPTER_WEIGHTS}: {key!r} names no targeted layer of the base model"
                )
            pairs.setdefault(module, {})[factor] = tensor
        sizes = {name: (layer.in_features, layer.out_features) for name, layer in self.layers.items()}
        total = sum((i + o) * self.max_rank for i, o in sizes.values())
        buffer = torch.zeros(total, dtype=self.dtype, pin_memory=self.device.type == "cuda")
        factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        offset = 0
        for name, (fan_in, fan_out) in sizes.items():
            a = buffer[offset : offset + fan_in * self.max_rank].view(self.max_rank, fan_in)
            offset += fan_in * self.max_rank
            b = buffer[offset : offset + fan_out * self.max_rank].view(self.max_rank, fan_out)
            offset += fan_out * self.max_rank
            found = pairs.get(name)
            if found is not None:
                if set(found) != {"A", "B"}:
                    raise AdapterFormatError(f"{ADAPTER_WEIGHTS}: {name} lacks lora_A or lora_B")
                lora_a, lora_b = found["A"], found["B"]  # peft: A [r, in], B [out, r]
                if lora_a.shape != (spec.rank, fan_in) or lora_b.shape != (fan_out, spec.rank):
                    raise AdapterFormatError(
                        f"{ADAPTER_WEIGHTS}: {name} has shapes {tuple(lora_a.shape)} / {tuple(lora_b.shape)}, "
                        f"expected ({spec.rank}, {fan_in}) / ({fan_out}, {spec.rank})"
                    )
                a[: spec.rank, :].copy_(lora_a)
                b[: spec.rank, :].copy_(lora_b.t().float().mul(spec.scale))
            factors[name] = (a, b)
        adapter = HostAdapter(buffer, factors)
        self.host[adapter_id] = adapter
        if adapter_id in self.table:  # a new version replaces the resident copy on the next batch
            self.table.evict(adapter_id)
        return adapter

    # ---- host memory -> GPU slots --------------------------------------------------------------------

    def page_in(self, adapter_id: str, slot: int) -> None:
        adapter = self.host[adapter_id]
        for name, layer in self.layers.items():
            a, b = adapter.factors[name]
            layer.group.a_slot(slot, layer.member).copy_(a, non_blocking=True)
            layer.group.b_slot(slot, layer.member).copy_(b, non_blocking=True)

    def assign(self, adapter_ids: Sequence[str]) -> torch.Tensor:
        unknown = sorted(set(adapter_ids) - set(self.host))
        if unknown:
            raise KeyError(f"adapter_ids: not loaded: {', '.join(unknown[:5])}")
        assignment = self.table.assign(adapter_ids)
        for adapter_id, slot in assignment.page_ins:
            self.page_in(adapter_id, slot)
        return torch.tensor(assignment.rows, device=self.device)

    @contextmanager
    def adapters(self, adapter_ids: Sequence[str] | None) -> Iterator[None]:
        """Within the block, row i of every forward pass uses adapter_ids[i] (None: the base model)."""
        slots = None if adapter_ids is None else self.assign(adapter_ids)
        for group in self.groups:
            group.gather(slots)
        try:
            yield
        finally:
            for group in self.groups:
                group.gather(None)

    def generate(self, adapter_ids: Sequence[str] | None, **kwargs: Any) -> Any:
        with torch.inference_mode(), self.adapters(adapter_ids):
            return self.model.generate(**kwargs)

    def bytes_per_slot(self) -> int:
        return sum((g.a[0].numel() + g.b[0].numel()) * g.a.element_size() for g in self.groups)
