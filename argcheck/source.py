"""What a class accepts and what a registry holds, read from the source of their modules without importing them.

Importing a layer, a datamodule or an optimizer loads torch (1.5 s) and often Lightning (3 s more); reading their
source takes milliseconds. So the checks of a command line can ask the chosen classes themselves which arguments
they take, with which annotations and defaults, before torch is loaded: a class declares what it reads by its
signature, and nothing else needs to list it. ``tests/test_flags.py`` holds every answer here against the imported
classes.

Targets are written ``"package.module:Name"``. What this understands: a class's ``__init__`` (keyword and positional
parameters; a ``**kwargs`` that the class passes on to its first base, followed there), a ``@dataclass``'s fields, a
module-level dict (a registry: names to classes or to ``"module:Class"`` strings) or list/tuple of names, and names
imported from other modules (``from x import Name``, relative imports too).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SourceError(LookupError):
    """A target that cannot be found or read from source."""


@dataclass(frozen=True)
class Parameter:
    """One argument a class accepts: its name, its annotation's text (``""``: none), whether it has a default, and
    the module whose names the annotation uses."""

    name: str
    annotation: str
    has_default: bool
    module: str

    def expanded_annotation(self) -> str:
        """The annotation with the aliases it names (``Norm`` for ``Literal["BatchNorm", ...]``) written out."""
        return expand(self.module, self.annotation) if self.annotation else ""


@functools.cache
def module_file(module: str) -> Path:
    """The source file of ``module``, found from its top-level package's location (nothing is imported)."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)  # a top-level name: its package is located, not imported
    if spec is None:
        raise SourceError(f"module {module} is not installed")
    if spec.submodule_search_locations:
        base = Path(next(iter(spec.submodule_search_locations)))
    elif spec.origin and not rest:
        return Path(spec.origin)
    else:
        raise SourceError(f"module {module} has no source to read")
    path = base.joinpath(*rest)
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise SourceError(f"module {module} has no source file under {base}")


@functools.cache
def _tree(module: str) -> ast.Module:
    return ast.parse(module_file(module).read_text(encoding="utf-8"))


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The module an ``ImportFrom`` in ``module`` names, with relative imports made absolute."""
    if not node.level:
        return node.module or ""
    package = module.split(".")
    is_package = module_file(module).name == "__init__.py"
    base = package if is_package else package[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


@functools.cache
def definition(target: str) -> tuple[str, ast.AST]:
    """``(module, node)`` where ``target`` (``"module:Name"``) is defined: a class, a function or an assignment,
    following imports and plain aliases (``Name = Other``)."""
    module, _, name = target.partition(":")
    for node in _tree(module).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == name:
            return module, node
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                value = node.value
                if isinstance(value, ast.Name):
                    return definition(_resolve(module, value.id))
                return module, node
    for node in _tree(module).body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = _absolute(module, node)
                    try:  # `from package import submodule` names a module, not a member
                        module_file(f"{source}.{alias.name}")
                    except SourceError:
                        return definition(f"{source}:{alias.name}")
    raise SourceError(f"{target} is not defined in the source of {module}")


def _resolve(module: str, name: str) -> str:
    """The target (``"module:Name"``) that ``name`` refers to inside ``module``."""
    for node in _tree(module).body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return f"{_absolute(module, node)}:{alias.name}"
    return f"{module}:{name}"


def target_of(module: str, node: ast.expr) -> str:
    """The target a registry value refers to: a ``"module:Class"`` string, or a name defined or imported."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return _resolve(module, node.id)
    raise SourceError(f"cannot read a class from {ast.unparse(node)} in {module}")


def _value_node(target: str) -> tuple[str, ast.expr]:
    module, node = definition(target)
    if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
        raise SourceError(f"{target} is not a module-level value")
    return module, node.value


@functools.cache
def registry(target: str) -> dict[Any, str]:
    """A module-level dict of names to classes: name -> ``"module:Class"``."""
    module, value = _value_node(target)
    if not isinstance(value, ast.Dict):
        raise SourceError(f"{target} is not a dict")
    return {ast.literal_eval(key): target_of(module, item) for key, item in zip(value.keys, value.values) if key}


@functools.cache
def names(target: str) -> tuple[Any, ...]:
    """The names a module-level dict (its keys), list or tuple holds."""
    _, value = _value_node(target)
    if isinstance(value, ast.Dict):
        return tuple(ast.literal_eval(key) for key in value.keys if key is not None)
    return tuple(ast.literal_eval(value))


def _bases(module: str, node: ast.ClassDef) -> list[str]:
    return [_resolve(module, base.id) for base in node.bases if isinstance(base, ast.Name)]


def _is_dataclass(node: ast.ClassDef) -> bool:
    return any(
        (isinstance(d, ast.Name) and d.id == "dataclass")
        or (isinstance(d, ast.Call) and isinstance(d.func, ast.Name) and d.func.id == "dataclass")
        for d in node.decorator_list
    )


def _function_parameters(module: str, function: ast.FunctionDef) -> tuple[list[Parameter], bool]:
    """(the parameters after ``self``, whether it takes ``**kwargs``)."""
    arguments = function.args
    positional = [*arguments.posonlyargs, *arguments.args][1:]
    defaults = [None] * (len(positional) - len(arguments.defaults)) + list(arguments.defaults)
    pairs = [*zip(positional, defaults), *zip(arguments.kwonlyargs, arguments.kw_defaults)]
    found = [
        Parameter(a.arg, ast.unparse(a.annotation) if a.annotation else "", d is not None, module) for a, d in pairs
    ]
    return found, arguments.kwarg is not None


@functools.cache
def parameters(target: str) -> dict[str, Parameter]:
    """The arguments the class ``target`` accepts, by name (``self`` and ``**kwargs`` left out)."""
    module, node = definition(target)
    if not isinstance(node, ast.ClassDef):
        raise SourceError(f"{target} is not a class")
    if _is_dataclass(node):
        found: dict[str, Parameter] = {}
        for base in _bases(module, node):
            found |= parameters(base)
        for item in node.body:
            field = isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            if field and "ClassVar" not in ast.unparse(item.annotation):  # type: ignore[union-attr]
                name = item.target.id  # type: ignore[union-attr]
                found[name] = Parameter(name, ast.unparse(item.annotation), item.value is not None, module)  # type: ignore[union-attr]
        return found
    init = next((i for i in node.body if isinstance(i, ast.FunctionDef) and i.name == "__init__"), None)
    bases = _bases(module, node)
    if init is None:
        return parameters(bases[0]) if bases else {}
    own, forwards = _function_parameters(module, init)
    found = {p.name: p for p in own}
    if forwards and bases:
        found = {**parameters(bases[0]), **found}
    return found


class _Expand(ast.NodeTransformer):
    def __init__(self, module: str, known: frozenset[str]) -> None:
        self.module, self.known = module, known

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.known:
            return node
        try:
            module, found = definition(_resolve(self.module, node.id))
        except SourceError:
            return node
        if isinstance(found, ast.Assign | ast.AnnAssign) and found.value is not None:
            return _Expand(module, self.known).visit(found.value)
        return node


def expand(module: str, text: str, known: frozenset[str] = frozenset()) -> str:
    """``text`` (an expression in ``module``) with every name defined there as a module-level alias replaced by
    its definition, recursively; names in ``known`` are left as they are."""
    from argcheck.rules import VOCABULARY

    tree = _Expand(module, known | frozenset(VOCABULARY)).visit(ast.parse(text, mode="eval"))
    return ast.unparse(tree)
