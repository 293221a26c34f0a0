"""Which rows make a unit and which columns read it: the walks :mod:`core.unlearning.perturb` edits along.

A mixin of :class:`core.models.graph.ModelGraph`: it reads the graph through ``tensor``, ``kind``,
``tensor_inputs``, ``users``, ``shape``, ``spatial`` and ``call_of``.
"""
from __future__ import annotations

from core.errors import UserError
from core.models.tracing import describe


class UnitWiring:
    """Producers and consumers of a layer's units (see the module docstring)."""

    def producers(self, layer: str, units: list[int]) -> list[tuple[str, tuple[int, ...]]]:
        """(module, output channels) for every Conv/Linear and BatchNorm whose rows make the units of
        ``layer``: walking back through activations and pooling (same channels), flattening (unit u
        of a flattened (C,H,W) map is channel u // (H*W)), residual sums (every branch) and gates
        (the full-size operand). Raises UserError where something else makes the tensor."""
        found: list[tuple[str, tuple[int, ...]]] = []
        seen: set[tuple[str, tuple[int, ...]]] = set()
        start = self.tensor(layer)
        stack = [(start, tuple(sorted(set(units))))]
        while stack:
            node, chans = stack.pop()
            if (node.name, chans) in seen:
                continue
            seen.add((node.name, chans))
            kind = self.kind(node)
            if kind == "weighted":
                found.append((node.target, chans))
            elif kind == "norm":
                found.append((node.target, chans))
                stack.append((node.args[0], chans))
            elif kind == "pass":
                stack.append((self.tensor_inputs(node)[0], chans))
            elif kind == "reshape":
                source = node.args[0]
                spatial = self.spatial(source)
                stack.append((source, tuple(sorted({u // spatial for u in chans})) if spatial > 1 else chans))
            elif kind == "add":
                stack.extend((branch, chans) for branch in self.tensor_inputs(node))
            elif kind == "gate":
                full = [b for b in self.tensor_inputs(node) if self.shape(b) == self.shape(node)]
                stack.extend((branch, chans) for branch in full)
            else:
                raise UserError(f"The units of '{layer}' are made by '{describe(node)}', which no Conv or Linear "
                                "row edit can silence; use target 'out', or analyse another layer.")
        return found

    def consumers(self, layer: str, units: list[int]) -> list[tuple[str, tuple[int, ...]]]:
        """(module, input columns) for every Conv/Linear that reads the units of ``layer``: forward
        through activations, pooling, BatchNorm, residual sums and gates (same channels) and
        flattening (channel c of a (C,H,W) map becomes columns c*H*W .. c*H*W + H*W - 1)."""
        start = self.tensor(layer)
        flat_units = len(self.shape(start)) == 1
        found, stack, seen = [], [(start, tuple(sorted(set(units))), flat_units)], set()
        while stack:
            node, chans, flat = stack.pop()
            for user in self.users(node):
                if (user.name, chans) in seen:
                    continue
                seen.add((user.name, chans))
                kind = self.kind(user)
                if kind == "weighted":
                    found.append((user.target, chans))
                elif kind in ("pass", "norm", "add", "gate"):
                    stack.append((user, chans, flat))
                elif kind == "reshape" and len(self.shape(node)) == 3 and not flat:
                    spatial = self.spatial(node)
                    stack.append((user, tuple(c * spatial + p for c in chans for p in range(spatial)), True))
                elif kind == "reshape":
                    stack.append((user, chans, flat))
                elif kind == "output":
                    continue
                else:
                    raise UserError(f"The units of '{layer}' are read by '{describe(user)}', not by a Conv or Linear "
                                    "layer, so target 'out' cannot reach them; use target 'in'.")
        if not found:
            raise UserError(f"No Conv or Linear layer reads '{layer}', so target 'out' cannot reach it; use target 'in'.")
        return found

    def successor(self, name: str) -> str | None:
        """Path of the module that alone reads module ``name``'s output (None when several
        operations do, or a function)."""
        users = self.users(self.call_of(name))
        return users[0].target if len(users) == 1 and users[0].op == "call_module" else None
