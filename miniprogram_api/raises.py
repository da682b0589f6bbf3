"""Which domain errors a handler can answer with, read from the code itself.

The OpenAPI document lists, per operation, the error codes it can return. Writing those lists by
hand drifts; instead `raises(handler)` reads the handler's source and, transitively, the source of
every function of ours it calls (models/, miniprogram_api/, server/), and collects the DomainError
classes they raise or construct. An `except X:` around a call removes what it catches (unless the
handler re-raises). Calls through objects are followed where the object's class is known:
`request.app.ctx.wechat.<method>` is `WeChatServices.<method>`, `self.<method>` is a method of the
same class.

This over-approximates (a branch the API never reaches still counts), never under-approximates for
code it can read; `doc(..., unreachable=...)` names, with a reason, what the API cannot reach. The
tests check the other direction at run time: every error a test provokes must be in the list.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import inspect
import textwrap
from typing import Any, Callable

from models.errors import DomainError

OUR_PACKAGES = ("models", "miniprogram_api", "server")
# Errors a function raises that its callers must not inherit by default, and why.
# ledger.post refuses a debit that would overdraw *any* account; for the platform's accounts
# (escrow, fees) that cannot happen while the books are right (the ledger audit proves it), so only
# the operations that debit a user's own balance (publish, withdraw) answer insufficient_balance:
# they list it with doc(errors=...).
NOT_INHERITED = {("models.ledger", "post"): ("InsufficientBalance",)}
# Attributes of `request.app.ctx` whose methods we can follow, by the class of the object.
CTX_CLASSES = {"wechat": ("server.wechat_services", "WeChatServices")}


def _ours(obj: Any) -> bool:
    module = getattr(obj, "__module__", "") or ""
    return module.split(".")[0] in OUR_PACKAGES


def _is_error(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, DomainError)


@functools.cache
def raises(func: Callable) -> frozenset[type[DomainError]]:
    """Every DomainError class `func` (or anything of ours it calls) may raise."""
    return frozenset(_Walker().function(func))


class _Walker:
    def __init__(self) -> None:
        self.stack: set[Any] = set()

    def function(self, func: Callable) -> set[type[DomainError]]:
        func = inspect.unwrap(func)
        key = getattr(func, "__code__", func)
        if key in self.stack or not callable(func):
            return set()
        cached = _CACHE.get(key)
        if cached is not None:
            return set(cached)
        self.stack.add(key)
        try:
            try:
                source = textwrap.dedent(inspect.getsource(func))
            except (OSError, TypeError):
                return set()
            tree = ast.parse(source)
            scope = _Scope(func)
            found = self._block(tree.body, scope, caught=())
        finally:
            self.stack.discard(key)
        _CACHE[key] = frozenset(found)
        return found

    def _block(self, nodes: list[ast.AST], scope: "_Scope", caught: tuple[type, ...]) -> set[type[DomainError]]:
        found: set[type[DomainError]] = set()
        for node in nodes:
            found |= self._node(node, scope, caught)
        return found

    def _node(self, node: ast.AST, scope: "_Scope", caught: tuple[type, ...]) -> set[type[DomainError]]:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            scope.imports(node)
            return set()
        if isinstance(node, ast.Try):
            handled = []
            for handler in node.handlers:
                kinds = scope.exception_types(handler.type)
                reraises = any(isinstance(n, ast.Raise) and n.exc is None for n in ast.walk(handler))
                if not reraises:
                    handled += kinds
            inner = self._block(node.body, scope, caught + tuple(handled))
            outer = set()
            for handler in node.handlers:
                outer |= self._block(handler.body, scope, caught)
            outer |= self._block(node.orelse, scope, caught) | self._block(node.finalbody, scope, caught)
            return inner | outer
        found: set[type[DomainError]] = set()
        if isinstance(node, ast.Call):
            for target in scope.resolve(node.func):
                if _is_error(target):
                    found.add(target)
                elif _ours(target) and callable(target):
                    dropped = NOT_INHERITED.get((getattr(target, "__module__", ""), getattr(target, "__name__", "")), ())
                    found |= {e for e in self.function(target) if e.__name__ not in dropped}
        elif isinstance(node, ast.Raise) and node.exc is not None and not isinstance(node.exc, ast.Call):
            for target in scope.resolve(node.exc):
                if _is_error(target):
                    found.add(target)
        for child in ast.iter_child_nodes(node):
            found |= self._node(child, scope, caught)
        return {e for e in found if not (caught and issubclass(e, caught))}


_CACHE: dict[Any, frozenset] = {}


class _Scope:
    """Name resolution for one function: its module's globals, its local imports, its class."""

    def __init__(self, func: Callable) -> None:
        self.globals = getattr(func, "__globals__", {})
        self.locals: dict[str, Any] = {}
        qual = getattr(func, "__qualname__", "").split(".")
        self.owner = self.globals.get(qual[0]) if len(qual) > 1 and "<locals>" not in qual else None

    def imports(self, node: ast.AST) -> None:
        try:
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if hasattr(module, alias.name):
                        self.locals[alias.asname or alias.name] = getattr(module, alias.name)
                    else:
                        self.locals[alias.asname or alias.name] = importlib.import_module(f"{node.module}.{alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    self.locals[alias.asname or alias.name.split(".")[0]] = importlib.import_module(alias.name.split(".")[0])
        except ImportError:
            pass

    def lookup(self, name: str) -> Any:
        if name in self.locals:
            return self.locals[name]
        if name in self.globals:
            return self.globals[name]
        return getattr(builtins, name, None)

    def resolve(self, expr: ast.AST) -> list[Any]:
        """What a called expression may be: a function, a class, or nothing we can follow."""
        if isinstance(expr, ast.Name):
            found = self.lookup(expr.id)
            return [found] if found is not None else []
        if isinstance(expr, ast.Attribute):
            chain = _chain(expr)
            if chain and chain[0] == "self" and self.owner is not None and len(chain) == 2:
                found = getattr(self.owner, chain[1], None)
                return [found] if found is not None else []
            if len(chain) >= 2 and chain[-2] in CTX_CLASSES and "ctx" in chain:
                module, cls = CTX_CLASSES[chain[-2]]
                found = getattr(getattr(importlib.import_module(module), cls), chain[-1], None)
                return [found] if found is not None else []
            if chain:
                obj = self.lookup(chain[0])
                for part in chain[1:]:
                    # Only modules and classes are walked into: an instance's attribute may be
                    # anything (and reading one may even have effects).
                    if not (inspect.ismodule(obj) or isinstance(obj, type)):
                        return []
                    try:
                        obj = getattr(obj, part, None)
                    except Exception:  # noqa: BLE001
                        return []
                    if obj is None:
                        return []
                return [obj] if (_ours(obj) or _is_error(obj)) else []
        return []

    def exception_types(self, expr: ast.AST | None) -> list[type]:
        if expr is None:
            return [BaseException]
        items = expr.elts if isinstance(expr, ast.Tuple) else [expr]
        out = []
        for item in items:
            for found in self.resolve(item):
                if isinstance(found, type) and issubclass(found, BaseException):
                    out.append(found)
        return out


def _chain(expr: ast.AST) -> list[str]:
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if isinstance(expr, ast.Name):
        parts.append(expr.id)
        return parts[::-1]
    if isinstance(expr, ast.Call):  # e.g. await User.get(...).update(...): not followed
        return []
    return []
