"""The model as a graph: which layer feeds which, and where a model can be cut in two.

Every model the engine touches, a project architecture, torchvision's own ``forward``, any nested
``nn.Module`` or a GraphModule imported from ONNX or ``.pt2`` (:mod:`core.formats`), is traced once
into a ``torch.fx`` graph of its calls. :class:`ModelGraph` reads three things off that graph:

* **layers**, named by their module path (``fc``, ``features.3``, ``layer4.1.conv2``); an analysed
  tensor is a module's output (``relu3``) or a module's input (``fc:input``);
* **who produces and who consumes a unit**: from a tensor backwards through element-wise
  activations, pooling, BatchNorm, flattening, residual sums and gates to the Conv/Linear layers
  whose rows make it, and forwards to the Conv/Linear layers whose columns read it
  (:mod:`core.perturb` edits those weights);
* **cuts**: a position p in the graph's (topological) node order and the *live* tensors at p, the
  values computed before p that nodes at or after p still read. The model is then
  ``tail(head(x))`` with ``head: x -> live`` and ``tail: live -> logits``; for a chain the live set is
  one tensor, for a residual network it also holds the skip connections. A weight edit at or after
  p leaves ``head`` unchanged, so the evaluation set's live tensors are computed once and each
  perturbed variant runs only its tail (:class:`core.compute.ActivationCache`).

The graph is traced on a private copy, so tracing and shape propagation never run or hook the
caller's model; heads and tails are compiled once and then run on *any* model of the same
structure (the source or an edited copy), resolving modules by path at call time.
"""
from __future__ import annotations

import copy
import operator
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from core.errors import UserError

WEIGHTED = (nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
# unit-preserving modules: output unit/channel u is computed from input unit/channel u alone
PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid,
                nn.Tanh, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.MaxPool2d, nn.AvgPool2d,
                nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
PASS_FUNCTIONS = {torch.relu, F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.hardswish, F.hardsigmoid,
                  torch.sigmoid, torch.tanh, F.dropout, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
                  F.adaptive_max_pool2d, torch.nn.functional.dropout2d}
PASS_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone"}
RESHAPES_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze}
RESHAPE_METHODS = {"flatten", "view", "reshape", "squeeze"}
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
MUL_FUNCTIONS = {operator.mul, operator.imul, torch.mul}
MEAN_FUNCTIONS = {torch.mean}


class _TracingGate:
    """torch.fx's symbolic tracing patches ``nn.Module.__call__`` for the whole process while it
    runs, so a model that another thread (another dashboard session) runs at that moment would go
    through the tracer and fail. Model runs share this gate; tracing takes it alone."""

    def __init__(self):
        self._condition = threading.Condition()
        self._runs = 0
        self._tracing = False

    @contextmanager
    def run(self):
        """Around running a model: waits while a trace is under way."""
        with self._condition:
            while self._tracing:
                self._condition.wait()
            self._runs += 1
        try:
            yield
        finally:
            with self._condition:
                self._runs -= 1
                self._condition.notify_all()

    @contextmanager
    def trace(self):
        """Around tracing: waits until no model runs, and keeps new runs waiting."""
        with self._condition:
            while self._tracing or self._runs:
                self._condition.wait()
            self._tracing = True
        try:
            yield
        finally:
            with self._condition:
                self._tracing = False
                self._condition.notify_all()


GATE = _TracingGate()


@dataclass(frozen=True)
class Cut:
    """Position ``position`` in the node order and the live tensors (node names) the tail reads."""

    position: int
    live: tuple[str, ...]


class _Compiled:
    """A graph compiled once into a Python function ``forward(self, *inputs)`` that resolves every
    module and attribute on ``self`` at call time, so it runs on any model of the same structure."""

    def __init__(self, graph: fx.Graph):
        code = graph.python_code(root_module="self")
        namespace = dict(code.globals)
        exec(compile(code.src, "<core.graph>", "exec"), namespace)  # noqa: S102 - code generated by torch.fx
        self.function: Callable = namespace["forward"]

    def __call__(self, model: nn.Module, *inputs):
        return self.function(model, *inputs)


class ModelGraph:
    """The traced structure of one model (see the module docstring). Build it with
    :func:`graph_of`, which remembers it per model object."""

    def __init__(self, model: nn.Module, input_shape: Iterable[int]):
        self.input_shape = tuple(int(d) for d in input_shape)
        private = copy.deepcopy(model).eval()
        with GATE.trace():
            self.module = _trace(private)
        for node in self.module.graph.nodes:
            if node.op == "placeholder" and node is not next(iter(self.module.graph.nodes)):
                raise UserError("The model takes more than one input; Unlearning Lab needs a model of one image batch.")
        try:
            with torch.no_grad(), GATE.run():
                ShapeProp(self.module).propagate(torch.zeros(2, *self.input_shape))
        except Exception as exc:  # noqa: BLE001 - any failure here means the input shape does not fit
            raise UserError(f"The model does not accept inputs of shape {' x '.join(map(str, self.input_shape))} "
                            f"(channels x height x width): {type(exc).__name__}: {str(exc).splitlines()[0][:160]}") from exc
        self.nodes: list[fx.Node] = list(self.module.graph.nodes)
        self.position = {node.name: i for i, node in enumerate(self.nodes)}
        self.by_name = {node.name: node for node in self.nodes}
        self.modules = dict(self.module.named_modules())
        self._calls: dict[str, list[fx.Node]] = {}
        for node in self.nodes:
            if node.op == "call_module":
                self._calls.setdefault(node.target, []).append(node)
        self._compiled: dict[tuple, _Compiled] = {}
        output = self.nodes[-1]
        if output.op != "output" or not isinstance(output.args[0], fx.Node) or len(self.shape(output.args[0])) != 1:
            raise UserError("The model must return one tensor of class scores (batch x classes).")
        self.output = output.args[0]
        self.num_classes = self.shape(self.output)[0]

    # ------------------------------------------------------------------ what the graph holds
    def shape(self, node: fx.Node) -> tuple[int, ...]:
        """Shape of one image's tensor at ``node`` (without the batch dimension); () for non-tensors."""
        meta = node.meta.get("tensor_meta")
        return tuple(meta.shape[1:]) if meta is not None and hasattr(meta, "shape") else ()

    def module_of(self, node: fx.Node) -> nn.Module | None:
        return self.modules[node.target] if node.op == "call_module" else None

    def call_of(self, name: str) -> fx.Node:
        """The one call of module ``name`` (a module called several times cannot name one tensor)."""
        calls = self._calls.get(name)
        if not calls:
            raise UserError(f"The model has no layer '{name}' that its forward pass calls; layers are: "
                            f"{', '.join(self.layer_names()[:40])}.")
        if len(calls) > 1:
            raise UserError(f"Layer '{name}' is called {len(calls)} times in the forward pass, so its output is not "
                            "one tensor; analyse the input of the layer after it instead (name it 'LAYER:input').")
        return calls[0]

    def called_once(self, name: str) -> bool:
        """Whether module ``name`` is called exactly once in the forward pass (so it names one tensor)."""
        return len(self._calls.get(name, ())) == 1

    def first_call(self, name: str) -> fx.Node:
        return self._calls[name][0]

    def layer_names(self) -> list[str]:
        """Every called module, in forward order."""
        return list(self._calls)

    def weighted(self) -> list[str]:
        """Conv2d and Linear modules in forward order (first call)."""
        return [name for name in self._calls if isinstance(self.modules[name], WEIGHTED)]

    def tensor(self, layer: str) -> fx.Node:
        """The node whose output an analysed layer name reads: ``NAME`` (module output) or
        ``NAME:input`` (its first input)."""
        name, _, where = layer.partition(":")
        if where not in ("", "input"):
            raise UserError(f"'{layer}' is not a layer name; use a module path, or 'PATH:input' for its input.")
        call = self.call_of(name)
        if where == "input":
            if not call.args or not isinstance(call.args[0], fx.Node):
                raise UserError(f"Layer '{name}' has no tensor input to analyse.")
            return call.args[0]
        return call

    def classifier(self) -> str:
        """The classifier: the last Linear layer before the output, found by walking back from the
        output through unit-preserving operations."""
        node = self.output
        while True:
            module = self.module_of(node)
            if isinstance(module, nn.Linear):
                return node.target
            if self.kind(node) in ("pass", "norm", "reshape") and isinstance(node.args[0], fx.Node):
                node = node.args[0]
                continue
            raise UserError("The model's output is not produced by a Linear layer, so it has no classifier input "
                            "to analyse (the method reads the units a final Linear layer weighs).")

    def classifier_input(self) -> fx.Node:
        """The node whose output the classifier reads."""
        return self.call_of(self.classifier()).args[0]

    def default_layer(self) -> str:
        """The classifier's input: the module feeding it when it is one called module, else
        ``CLASSIFIER:input``."""
        source = self.classifier_input()
        node = source
        while node.op == "call_module" and isinstance(self.modules[node.target], (nn.Dropout, nn.Identity)) \
                and isinstance(node.args[0], fx.Node):
            node = node.args[0]          # identities in eval mode: name the activation before them
        for candidate in (node, source):
            if candidate.op == "call_module" and self.called_once(candidate.target):
                return candidate.target
        return f"{self.classifier()}:input"

    def analysable_layers(self) -> list[str]:
        """Tensors worth analysing, in forward order: the output of every activation module called
        once, the input of a layer that reads a residual sum (``NAME:input``), and always the
        classifier's input (:meth:`default_layer`)."""
        found: dict[str, str] = {}           # tensor node -> layer name
        quiet = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                 nn.AdaptiveMaxPool2d)
        for node in self.nodes:
            kind, module = self.kind(node), self.module_of(node)
            if kind == "pass" and module is not None and self.called_once(node.target) and not isinstance(module, quiet):
                found.setdefault(node.name, node.target)
            elif kind == "weighted" and isinstance(node.args[0], fx.Node) and self._after_sum(node.args[0]) \
                    and self.called_once(node.target):
                found.setdefault(node.args[0].name, f"{node.target}:input")
        last = self.default_layer()
        found.setdefault(self.tensor(last).name, last)
        return [found[name] for name in sorted(found, key=self.position.__getitem__)]

    def _after_sum(self, node: fx.Node) -> bool:
        """Whether ``node`` is a residual sum or an activation of one."""
        if self.kind(node) == "add":
            return True
        inputs = self.tensor_inputs(node)
        return self.kind(node) == "pass" and bool(inputs) and self.kind(inputs[0]) == "add"

    # ------------------------------------------------------------------ kinds of node
    def kind(self, node: fx.Node) -> str:
        """weighted | norm | pass | reshape | add | gate | shape | input | output | other."""
        if node.op == "placeholder":
            return "input"
        if node.op == "output":
            return "output"
        if node.op == "get_attr":
            return "shape"
        if not self.shape(node):
            return "shape"
        module = self.module_of(node)
        if module is not None:
            if isinstance(module, WEIGHTED):
                return "weighted"
            if isinstance(module, NORMS):
                return "norm"
            if isinstance(module, PASS_MODULES):
                return "pass"
            if isinstance(module, nn.Flatten):
                return "reshape"
            return "other"
        target = node.target
        if node.op == "call_function" and target in PASS_FUNCTIONS or node.op == "call_method" and target in PASS_METHODS:
            return "pass"
        if node.op == "call_function" and target in MEAN_FUNCTIONS:
            return "pass" if self._is_spatial_mean(node) else "other"
        if node.op == "call_function" and target in RESHAPES_FUNCTIONS or node.op == "call_method" and target in RESHAPE_METHODS:
            return "reshape" if self._is_flattening(node) else "other"
        tensors = self.tensor_inputs(node)
        if node.op == "call_function" and target in ADD_FUNCTIONS or node.op == "call_method" and target in ("add", "add_"):
            return "add" if len(tensors) == 2 else "pass"      # x + constant keeps units
        if node.op == "call_function" and target in MUL_FUNCTIONS or node.op == "call_method" and target in ("mul", "mul_"):
            return "gate" if len(tensors) == 2 else "pass"
        return "other"

    def _is_spatial_mean(self, node: fx.Node) -> bool:
        source = node.args[0]
        shape_in, shape_out = self.shape(source), self.shape(node)
        return len(shape_in) == 3 and shape_out[:1] == shape_in[:1]

    def _is_flattening(self, node: fx.Node) -> bool:
        """(C,H,W) -> (C*H*W,) or (C,1,1) -> (C,), or a no-op on (D,)."""
        source = node.args[0]
        if not isinstance(source, fx.Node):
            return False
        shape_in, shape_out = self.shape(source), self.shape(node)
        if shape_in == shape_out:
            return True
        return len(shape_out) == 1 and len(shape_in) >= 1 and shape_out[0] == int(torch.tensor(shape_in).prod())

    def spatial(self, node: fx.Node) -> int:
        """H*W of a (C,H,W) tensor, 1 for a flat one."""
        shape = self.shape(node)
        return int(shape[1] * shape[2]) if len(shape) == 3 else 1

    def tensor_inputs(self, node: fx.Node) -> list[fx.Node]:
        return [a for a in node.args if isinstance(a, fx.Node) and a.op != "get_attr" and self.shape(a)]

    def users(self, node: fx.Node) -> list[fx.Node]:
        return [u for u in node.users if self.kind(u) != "shape" or u.op == "output"]

    # ------------------------------------------------------------------ cuts
    def cut_before(self, node: fx.Node) -> Cut:
        """The cut whose tail starts at ``node``."""
        return self._cut(self.position[node.name])

    def cut_after(self, node: fx.Node) -> Cut:
        """The cut whose head ends with ``node``."""
        return self._cut(self.position[node.name] + 1)

    def _cut(self, position: int) -> Cut:
        live = []
        for node in self.nodes[:position]:
            if node.op == "get_attr":
                continue      # recomputed in the tail: parameters and constants must come from the variant
            if any(self.position[user.name] >= position for user in node.users):
                live.append(node.name)
        return Cut(position, tuple(live))

    def cut_at_module(self, name: str) -> Cut:
        return self.cut_before(self.call_of(name))

    def earliest_cut(self, modules: Iterable[str]) -> Cut:
        """The cut before the first call of the earliest of ``modules`` (the end when none)."""
        positions = [self.position[self.first_call(m).name] for m in modules if m in self._calls]
        return self._cut(min(positions)) if positions else self._cut(len(self.nodes) - 1)

    def _compiled_part(self, key: tuple, build: Callable[[], fx.Graph]) -> _Compiled:
        if key not in self._compiled:
            self._compiled[key] = _Compiled(build())
        return self._compiled[key]

    def probe(self, names: Iterable[str]) -> _Compiled:
        """x -> tuple of the named nodes' values (only the nodes they need are run)."""
        names = tuple(names)

        def build() -> fx.Graph:
            needed = self._ancestors(names)
            graph, env = fx.Graph(), {}
            for node in self.nodes:
                if node.name in needed:
                    env[node] = graph.node_copy(node, lambda n: env[n])
            graph.output(tuple(env[self.by_name[n]] for n in names))
            return graph
        return self._compiled_part(("probe", names), build)

    def tail(self, cut: Cut) -> _Compiled:
        """(live tensors at ``cut``) -> logits."""
        return self.segment(cut, None)

    def segment(self, start: Cut, stop: Cut | None) -> _Compiled:
        """(live tensors at ``start``) -> live tensors at ``stop`` (a later cut), or the logits when
        ``stop`` is None."""
        if stop is not None and stop.position < start.position:
            raise ValueError("a segment runs forwards")

        def build() -> fx.Graph:
            graph, env = fx.Graph(), {}
            for name in start.live:
                env[self.by_name[name]] = graph.placeholder(f"live_{name}")
            for node in self.nodes:
                if node.op == "get_attr" and node not in env:
                    env[node] = graph.node_copy(node, lambda n: env[n])
            end = len(self.nodes) if stop is None else stop.position
            for node in self.nodes[start.position:end]:
                if node.op != "get_attr":
                    env[node] = graph.node_copy(node, lambda n: env[n])
            if stop is not None:
                graph.output(tuple(env[self.by_name[name]] for name in stop.live))
            return graph
        return self._compiled_part(("segment", start, stop), build)

    def _ancestors(self, names: tuple[str, ...]) -> set[str]:
        needed, stack = set(), [self.by_name[n] for n in names]
        while stack:
            node = stack.pop()
            if node.name in needed:
                continue
            needed.add(node.name)
            stack.extend(node.all_input_nodes)
        return needed

    # ------------------------------------------------------------------ running parts, in batches
    @torch.no_grad()
    def run_probe(self, model: nn.Module, images: torch.Tensor, names: Iterable[str],
                  batch_size: int = 1024) -> tuple[torch.Tensor, ...]:
        names = tuple(names)
        if not names:
            return ()
        from core.compute import model_device     # core.compute builds on this module

        part, device = self.probe(names), model_device(model)
        with GATE.run():
            chunks = [part(model, images[i:i + batch_size].to(device)) for i in range(0, len(images), batch_size)]
        if not chunks:
            return tuple(images[:0] for _ in names)
        return tuple(torch.cat([c[k] for c in chunks]) for k in range(len(names)))

    @torch.no_grad()
    def run_tail(self, model: nn.Module, live: tuple[torch.Tensor, ...], cut: Cut, batch_size: int = 2048) -> torch.Tensor:
        """Logits of ``model`` from the live tensors at ``cut``, on the CPU."""
        part = self.tail(cut)
        n = len(live[0]) if live else 0
        with GATE.run():
            outputs = [part(model, *(t[i:i + batch_size] for t in live)).float().cpu() for i in range(0, n, batch_size)]
        return torch.cat(outputs) if outputs else torch.empty(0, self.num_classes)

    @torch.no_grad()
    def run_segment(self, model: nn.Module, live: tuple[torch.Tensor, ...], start: Cut, stop: Cut,
                    batch_size: int = 2048) -> tuple[torch.Tensor, ...]:
        """The live tensors at ``stop`` from those at ``start``."""
        if start == stop:
            return live
        part = self.segment(start, stop)
        n = len(live[0]) if live else 0
        with GATE.run():
            chunks = [part(model, *(t[i:i + batch_size] for t in live)) for i in range(0, n, batch_size)]
        return tuple(torch.cat([c[k] for c in chunks]) for k in range(len(stop.live)))

    # ------------------------------------------------------------------ who makes and who reads a unit
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
                raise UserError(f"The units of '{layer}' are made by '{_describe(node)}', which no Conv or Linear "
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
                    raise UserError(f"The units of '{layer}' are read by '{_describe(user)}', not by a Conv or Linear "
                                    "layer, so target 'out' cannot reach them; use target 'in'.")
        if not found:
            raise UserError(f"No Conv or Linear layer reads '{layer}', so target 'out' cannot reach it; use target 'in'.")
        return found

    def successor(self, name: str) -> str | None:
        """Path of the module that alone reads module ``name``'s output (None when several
        operations do, or a function)."""
        users = self.users(self.call_of(name))
        return users[0].target if len(users) == 1 and users[0].op == "call_module" else None


def _describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return node.target
    target = getattr(node.target, "__name__", str(node.target))
    return f"{target} ({node.name})"


def _trace(model: nn.Module) -> fx.GraphModule:
    """``model`` as an fx GraphModule (itself when it is one)."""
    if isinstance(model, fx.GraphModule):
        return model
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - fx raises many kinds of error for untraceable code
        raise UserError(f"The model's forward pass could not be traced ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:120]}); export it with torch.export.save (.pt2) or to ONNX "
                        "and load that file instead.") from exc


_GRAPHS: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, ModelGraph]]" = weakref.WeakKeyDictionary()


def fitting_graph(model: nn.Module, input_shape: Iterable[int], num_classes: int, what: str = "The model",
                  dataset: str = "the dataset") -> ModelGraph:
    """:func:`graph_of`, and one sentence when the model's output width is not ``num_classes``
    (a shape that does not fit is refused by :class:`ModelGraph` itself)."""
    graph = graph_of(model, input_shape)
    if graph.num_classes != num_classes:
        raise UserError(f"{what} gives {graph.num_classes} class scores but {dataset} has {num_classes} classes; "
                        "choose the dataset the model was trained on.")
    return graph


def adopt(copy_: nn.Module, source: nn.Module) -> None:
    """Let ``copy_`` (a deep copy of ``source``, same structure) use the graphs traced for ``source``."""
    if source in _GRAPHS:
        _GRAPHS[copy_] = _GRAPHS[source]


def graph_of(model: nn.Module, input_shape: Iterable[int]) -> ModelGraph:
    """The :class:`ModelGraph` of ``model`` for images of ``input_shape`` (C,H,W), remembered per
    model object, so the engine traces each model once. The structure is the model's at the time of
    the first call: edit weights, not modules."""
    shape = tuple(int(d) for d in input_shape)
    per_model = _GRAPHS.setdefault(model, {})
    if shape not in per_model:
        per_model[shape] = ModelGraph(model, shape)
    return per_model[shape]
