"""The package's import structure: no import cycles, no private names across modules.

Read from the source with ``ast`` (nothing is imported), so every import counts:
module-level ones and those inside functions. A package's ``__init__`` is a module
of its own, named after the package (``lrjax.schedules``).
"""
from __future__ import annotations

import ast
import dataclasses
import pathlib
import textwrap

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _is_private(name: str) -> bool:
  return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@dataclasses.dataclass(frozen=True)
class Import:
  """One imported thing: ``module`` itself, or the ``name`` taken from it.

  Attributes:
    module: the module imported, or the one ``name`` comes from (absolute).
    name: the name taken from ``module`` (``from module import name``), else None.
    bound: the local name the import binds.
    line: the line of the import statement.
  """
  module: str
  name: str | None
  bound: str
  line: int


class Package:
  """A package's modules, read from source: its imports and private-name uses.

  Args:
    root: the directory holding the package's directory.
    name: the package's name (``lrjax``).
  """

  def __init__(self, root: pathlib.Path, name: str):
    self.root, self.name = root, name
    self.modules = {}  # module name -> (path, syntax tree)
    for path in sorted((root / name).rglob("*.py")):
      parts = path.relative_to(root).with_suffix("").parts
      module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
      self.modules[module] = (path, ast.parse(path.read_text(), filename=str(path)))

  def where(self, module: str, line: int) -> str:
    return f"{self.modules[module][0].relative_to(self.root)}:{line}"

  def package_of(self, module: str) -> str:
    """The package a module is in (a package's ``__init__`` is in the package itself)."""
    is_init = self.modules[module][0].name == "__init__.py"
    return module if is_init else module.rpartition(".")[0]

  def _absolute(self, importer: str, node: ast.ImportFrom) -> str:
    """The absolute module name of ``from <node.module> import ...``."""
    if not node.level:
      return node.module or ""
    base = self.package_of(importer).split(".")
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))

  def imports_of(self, importer: str) -> list[Import]:
    """The package's modules a module imports, anywhere in it (functions included)."""
    out = []
    for node in ast.walk(self.modules[importer][1]):
      if isinstance(node, ast.Import):
        for alias in node.names:
          if alias.name.split(".")[0] == self.name:
            out.append(Import(alias.name, None, alias.asname or self.name, node.lineno))
      elif isinstance(node, ast.ImportFrom):
        source = self._absolute(importer, node)
        if source.split(".")[0] == self.name:
          out.extend(Import(source, alias.name, alias.asname or alias.name, node.lineno)
                     for alias in node.names)
    return out

  def _targets(self, imp: Import) -> list[str]:
    """The modules an import is an edge to: a submodule taken by name is an edge to
    it, and to its package only for a name that is not a module."""
    if imp.name is not None and f"{imp.module}.{imp.name}" in self.modules:
      return [f"{imp.module}.{imp.name}"]
    return [imp.module] if imp.module in self.modules else []

  def import_graph(self) -> dict[str, set[str]]:
    """module -> the package's modules it imports (no self edges)."""
    return {m: {t for imp in self.imports_of(m) for t in self._targets(imp) if t != m}
            for m in self.modules}

  def own_private_module(self, importer: str, module: str) -> bool:
    """Whether ``module`` is a private module (``_util``) of the importer's package."""
    package, _, last = module.rpartition(".")
    return (module in self.modules and _is_private(last)
            and (importer == package or importer.startswith(package + ".")))

  def private_imports(self) -> list[str]:
    """``file:line: importer imports module.name`` for each private name imported
    from another module: a ``_name`` taken from a module, or a ``_module`` itself.

    Allowed: a subpackage's own private module (``lrjax.schedules._util``), imported
    by the modules of that subpackage, and any name taken from it there.
    """
    found = []
    for importer in self.modules:
      for imp in self.imports_of(importer):
        dotted = imp.module if imp.name is None else f"{imp.module}.{imp.name}"
        if not _is_private(dotted.rpartition(".")[2]):
          continue
        if self.own_private_module(importer, dotted) or (
            imp.name is not None and self.own_private_module(importer, imp.module)):
          continue
        found.append(f"{self.where(importer, imp.line)}: {importer} imports {dotted}")
    return found

  def _bound_modules(self, importer: str) -> dict[str, str]:
    """Local name -> the package's module it is bound to by the module's imports."""
    bound = {}
    for imp in self.imports_of(importer):
      if imp.name is None:
        # ``import lrjax.a.b`` binds ``lrjax``; ``import lrjax.a.b as m``, the module.
        bound[imp.bound] = self.name if imp.bound == self.name else imp.module
      elif f"{imp.module}.{imp.name}" in self.modules:
        bound[imp.bound] = f"{imp.module}.{imp.name}"
    return bound

  def _module_named(self, node: ast.AST, bound: dict[str, str]) -> str | None:
    """The module an expression such as ``lrjax.engine.trainer`` or ``grid_lib``
    names, or None."""
    if isinstance(node, ast.Name):
      return bound.get(node.id)
    if isinstance(node, ast.Attribute):
      base = self._module_named(node.value, bound)
      if base is not None and f"{base}.{node.attr}" in self.modules:
        return f"{base}.{node.attr}"
    return None

  def private_attribute_uses(self) -> list[str]:
    """``file:line: module._name`` for each use of another module's private attribute."""
    found = []
    for importer, (_, tree) in self.modules.items():
      bound = self._bound_modules(importer)
      for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
          continue
        module = self._module_named(node.value, bound)
        if module is None or module == importer:
          continue
        if (self.own_private_module(importer, module)
            or self.own_private_module(importer, f"{module}.{node.attr}")):
          continue
        found.append(f"{self.where(importer, node.lineno)}: {module}.{node.attr}")
    return found


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """One cycle per strongly connected component of more than one module (Tarjan)."""
  index, low, stack, on_stack, components = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = set()
      while not component or w != v:
        w = stack.pop()
        on_stack.discard(w)
        component.add(w)
      if len(component) > 1:
        components.append(component)

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return [_shortest_cycle(graph, c) for c in components]


def _shortest_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
  """A shortest cycle through the component's first module (breadth-first)."""
  start = min(component)
  parent, frontier = {start: None}, [start]
  while frontier:
    reached = []
    for v in frontier:
      for w in sorted(graph[v] & component):
        if w == start:
          path = [v]
          while parent[path[-1]] is not None:
            path.append(parent[path[-1]])
          return path[::-1] + [start]
        if w not in parent:
          parent[w] = v
          reached.append(w)
    frontier = reached
  raise AssertionError(f"no cycle in component {sorted(component)}")


LRJAX = Package(ROOT, "lrjax")


def test_import_graph_has_no_cycle():
  cycles = find_cycles(LRJAX.import_graph())
  assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_name_imported_across_modules():
  found = LRJAX.private_imports()
  assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_no_private_attribute_of_another_module_accessed():
  found = LRJAX.private_attribute_uses()
  assert not found, "private attributes of other modules:\n" + "\n".join(found)


def _fake_package(tmp_path, files):
  for name, source in files.items():
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
  return Package(tmp_path, "pkg")


def test_scanners_find_cycles_and_private_uses_in_a_fake_package(tmp_path):
  package = _fake_package(tmp_path, {
      "pkg/__init__.py": "from pkg import a\n",
      "pkg/a.py": "from pkg.sub import b\n",
      "pkg/sub/__init__.py": "VALUE = 1\n",
      "pkg/sub/_util.py": "def _helper(): pass\n",
      "pkg/sub/b.py": """\
          from pkg.sub._util import _helper
          from pkg.sub import _util
          def late():
            from pkg import a
            import pkg.sub as s
            return a._hidden, s._util._helper, _util._helper
          """,
      "pkg/c.py": """\
          from pkg.sub._util import _helper
          from pkg.sub import VALUE
          import pkg.a
          pkg.a._hidden
          """,
  })
  graph = package.import_graph()
  assert graph["pkg"] == {"pkg.a"}  # a module taken by name: no edge to the package
  assert graph["pkg.c"] == {"pkg.sub._util", "pkg.sub", "pkg.a"}
  assert find_cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.a"]]  # through a function
  # Inside pkg.sub its own _util is fine; outside it is not.
  assert package.private_imports() == ["pkg/c.py:1: pkg.c imports pkg.sub._util._helper"]
  assert package.private_attribute_uses() == ["pkg/c.py:4: pkg.a._hidden",
                                              "pkg/sub/b.py:6: pkg.a._hidden"]


def test_find_cycles_reports_one_shortest_cycle_per_component():
  graph = {"a": {"b"}, "b": {"c", "a"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
  assert find_cycles(graph) == [["a", "b", "a"]]
  assert find_cycles({"a": {"b"}, "b": set()}) == []
