"""Every service keeps the one shape of docs/development.md ("Shape of a service"), read from its source
with ``ast``: no module runs, nothing is imported.

Per service and per rule (so a failure says which rule of which service):

- ``role``: every module has a role: its file name, or the name of a package it sits in (innermost first,
  at any depth of an area like ``ingest/``), one of the roles of the table; the gateway's ``signals/`` is
  its ``domain/``.
- ``layers``: a module imports, of its own service, only the roles the table allows its role (and its
  own role); ``main`` and ``cli`` may import anything; ``migrations/`` is not read.
- ``other-service``: no import of another service, nor of the development tools (``relearn.devtools``,
  ``relearn.dev_issuer``): a service declares only ``relearn-shared``.
- ``shared-surface``: ``relearn.shared`` only through its public modules ("Shared's public surface").
- ``orm``: no query outside repository modules: ``select(``/``insert(``/``update(``/``delete(``/``text(``
  from SQLAlchemy or SQLModel, ``.exec(``, ``.execute(``, ``.scalar(s)(``, ``.query(``,
  ``.with_for_update(``, and ``get``/``add``/``delete``/``merge``/``flush``/``refresh`` on a session.
  Only the wiring modules (``main``, ``cli``, ``resources``, ``tables``, ``migrations/``) are exempt.

Each failure names ``file:line``, the rule and what to do. Imports under ``if TYPE_CHECKING`` count: a
type is a dependency too.
"""

from __future__ import annotations

import ast
import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The four services of the shape (folder, package). The front door is checked for the import rules only.
SERVICES = {
    "evaluation": "evaluation",
    "plan": "plan",
    "sessions": "sessions",
    "device-gateway": "device_gateway",
    "subscriptions": "subscriptions",
    "authorization": "authorization",
    "audit": "audit",
    "reports": "reports",
}
ALL_APPS = {**SERVICES, "front-door": "front_door"}

# docs/development.md: "module | may import (besides relearn.shared and libraries)".
ALLOWED: dict[str, set[str]] = {
    "config": {"config"},
    "domain": {"domain", "config"},
    "tables": {"domain", "config"},
    "schemas": {"domain", "config"},
    "resources": {"domain", "config"},
    "repository": {"tables", "resources", "domain", "config"},
    "mapper": {"schemas", "resources", "domain", "config"},
    "events": {"mapper", "schemas", "domain", "config"},
    "service": {"repository", "mapper", "events", "tables", "schemas", "resources", "domain", "config"},
    "api": {"service", "schemas", "mapper", "domain", "config"},
    "handlers": {"service", "schemas", "events", "domain", "config"},
}
WIRING = {"main", "cli"}
ROLES = set(ALLOWED) | WIRING
# A service's own name for a role (docs/development.md: "`signals/` is its `domain/`").
ALIASES: dict[str, dict[str, str]] = {"device_gateway": {"signals": "domain"}}
# Exempt from the ORM scan: the wiring modules and the tables' definitions (migrations/ is not read).
ORM_EXEMPT = {"main", "cli", "resources", "tables", "repository"}

SHARED_PUBLIC = {
    "relearn.shared.service",
    "relearn.shared.fhir",
    "relearn.shared.fhir.jsontext",
    "relearn.shared.auth",
    "relearn.shared.events",
    "relearn.shared.migrations",
    "relearn.shared.plumbing_schema",
    "relearn.shared.tables",
}
TOOLS = ("relearn.devtools", "relearn.dev_issuer")

ORM_FUNCTIONS = {"select", "insert", "update", "delete", "text"}
ORM_METHODS = {"exec", "execute", "scalar", "scalars", "query", "with_for_update"}
SESSION_METHODS = {"get", "get_one", "add", "add_all", "delete", "merge", "flush", "refresh"}
ORM_LIBRARIES = ("sqlmodel", "sqlalchemy")

RULES = ["role", "layers", "other-service", "shared-surface", "orm"]


@dataclass(frozen=True)
class Module:
    name: str  # dotted: relearn.plan.service.drafting
    path: Path
    role: str | None

    @property
    def where(self) -> str:
        return self.path.relative_to(REPO).as_posix() if self.path.is_relative_to(REPO) else str(self.path)


def package_root(folder: str, package: str) -> Path:
    return REPO / "services" / folder / "src" / "relearn" / package


def role_of(package: str, relative: Path) -> str | None:
    """The module's file name if it is a role, else the innermost enclosing package that is one."""
    aliases = ALIASES.get(package, {})
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    for part in reversed(parts):
        role = aliases.get(part, part)
        if role in ROLES:
            return role
    return None


def modules_of(folder: str, package: str) -> dict[str, Module]:
    root = package_root(folder, package)
    found = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] == "migrations":
            continue
        parts = [p for p in relative.with_suffix("").parts if p != "__init__"]
        name = ".".join(["relearn", package, *parts])
        found[name] = Module(name, path, role_of(package, relative))
    return found


def imports(module: Module) -> list[tuple[str, int]]:
    """(imported dotted name, line) for every import, ``from a.b import c`` giving ``a.b`` and ``a.b.c``."""
    tree = ast.parse(module.path.read_text(), str(module.path))
    is_package = module.path.name == "__init__.py"
    package = module.name if is_package else module.name.rpartition(".")[0]
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            out.append((base, node.lineno))
            out.extend((f"{base}.{alias.name}", node.lineno) for alias in node.names)
    return out


def target_module(name: str, modules: dict[str, Module]) -> Module | None:
    """The service module an imported name lands in (the longest module prefix)."""
    parts = name.split(".")
    for end in range(len(parts), 2, -1):
        found = modules.get(".".join(parts[:end]))
        if found is not None:
            return found
    return None


def declared_tools(folder: str) -> set[str]:
    """The tools' packages a member declares (dependencies or extras): the front door's dev-issuer extra."""
    project = tomllib.loads((REPO / "services" / folder / "pyproject.toml").read_text())["project"]
    declared = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        declared += extra
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip() for d in declared}
    return {t for t in TOOLS if t.replace(".", "-").replace("_", "-") in names}


@functools.cache
def violations(folder: str, package: str) -> dict[str, list[str]]:
    modules = modules_of(folder, package)
    own = f"relearn.{package}"
    others = [f"relearn.{p}" for p in ALL_APPS.values() if p != package]
    found: dict[str, list[str]] = {rule: [] for rule in RULES}
    for module in modules.values():
        if module.role is None and folder in SERVICES and module.path.name != "__init__.py":
            found["role"].append(
                f"{module.where}:1: [role] {module.name} has no role: name the file, or a package it sits "
                f"in, after one of {sorted(ROLES)} (docs/development.md, 'Shape of a service')"
            )
        seen: set[tuple[str, int]] = set()
        for name, line in imports(module):
            at = f"{module.where}:{line}"
            top = ".".join(name.split(".")[:2])
            if top in others or (top in TOOLS and top not in declared_tools(folder)):
                if (top, line) not in seen:
                    seen.add((top, line))
                    found["other-service"].append(
                        f"{at}: [other-service] imports {name}: a service imports no other service and no "
                        "development tool it does not declare (what services share and is plumbing belongs "
                        "in relearn.shared; data travels as events)"
                    )
            elif top in TOOLS:
                continue
            elif name.startswith("relearn.shared.") and not _shared_ok(name):
                if (name.rpartition(".")[0], line) in seen:
                    continue
                seen.add((name, line))
                found["shared-surface"].append(
                    f"{at}: [shared-surface] imports {name}: import it from one of {sorted(SHARED_PUBLIC)} "
                    '(docs/development.md, "Shared\'s public surface")'
                )
            elif folder in SERVICES and (name == own or name.startswith(own + ".")):
                target = target_module(name, modules)
                if target is None or target is module or module.role is None or target.role is None:
                    continue
                if module.role in WIRING or target.role == module.role:
                    continue
                if target.role not in ALLOWED[module.role] and (target.name, line) not in seen:
                    seen.add((target.name, line))
                    found["layers"].append(
                        f"{at}: [layers] {module.role} module {module.name} imports {target.role} module "
                        f"{target.name}: a {module.role} module may import only "
                        f"{sorted(ALLOWED[module.role])} (docs/development.md, the import table)"
                    )
        if folder in SERVICES and module.role not in ORM_EXEMPT:
            found["orm"].extend(orm_calls(module))
    for messages in found.values():
        messages.sort(key=lambda m: (m.split(":")[0], int(m.split(":")[1])))
    return found


def _shared_ok(name: str) -> bool:
    """``name`` is a public module, or a name imported from one (``relearn.shared.fhir.NotFound``)."""
    return name in SHARED_PUBLIC or (name.rpartition(".")[0] in SHARED_PUBLIC and _is_attribute(name))


def _is_attribute(name: str) -> bool:
    """A name imported from a public module, not an internal submodule spelled through it."""
    last = name.rpartition(".")[2]
    parent = name.rpartition(".")[0]
    folder = REPO / "shared" / "src" / Path(*parent.split("."))
    return not ((folder / f"{last}.py").exists() or (folder / last).is_dir()) or name in SHARED_PUBLIC


def _orm_names(tree: ast.Module) -> set[str]:
    """Local names bound to SQLAlchemy/SQLModel's query builders (``from sqlmodel import select``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ORM_LIBRARIES:
            names |= {alias.asname or alias.name for alias in node.names if alias.name in ORM_FUNCTIONS}
    return names


def _is_session(node: ast.expr) -> bool:
    """A session- or connection-like receiver: a name or attribute (``session``, ``self._session``, ``db``,
    ``conn``), not what a call returns (``d.setdefault(session, set())``) nor a mapping keyed by sessions
    (``self._by_session``)."""
    if not isinstance(node, ast.Name | ast.Attribute):
        return False
    text = (node.id if isinstance(node, ast.Name) else node.attr).lower()
    if "by" in text.strip("_").split("_"):
        return False
    return "session" in text or text in {"s", "db", "tx", "conn", "connection"}


def orm_calls(module: Module) -> list[str]:
    tree = ast.parse(module.path.read_text(), str(module.path))
    builders = _orm_names(tree)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        call: str | None = None
        if isinstance(func, ast.Name) and func.id in builders:
            call = f"{func.id}("
        elif isinstance(func, ast.Attribute):
            receiver = func.value
            library = isinstance(receiver, ast.Name) and receiver.id in (*ORM_LIBRARIES, "sa")
            if library and func.attr in ORM_FUNCTIONS:
                call = f"{ast.unparse(receiver)}.{func.attr}("
            elif func.attr in ORM_METHODS:
                call = f".{func.attr}("
            elif func.attr in SESSION_METHODS and _is_session(receiver):
                call = f"{ast.unparse(receiver)}.{func.attr}("
        if call:
            out.append(
                f"{module.where}:{node.lineno}: [orm] {call} in a {module.role or 'role-less'} module: every "
                "query lives in a repository module (docs/development.md, 'Shape of a service')"
            )
    return out


CASES = [(folder, rule) for folder in ALL_APPS for rule in RULES if folder in SERVICES or rule in RULES[2:4]]


@pytest.mark.parametrize(("folder", "rule"), CASES, ids=[f"{f}-{r}" for f, r in CASES])
def test_each_service_keeps_the_shape(folder: str, rule: str) -> None:
    found = violations(folder, ALL_APPS[folder])[rule]
    assert not found, f"{len(found)} x [{rule}] in {folder}:\n" + "\n".join(found)


def test_the_checks_see_what_they_must(tmp_path: Path) -> None:
    """The rules catch a violation of each kind (so a passing run is not a blind one)."""
    assert role_of("plan", Path("service/drafting.py")) == "service"
    assert role_of("plan", Path("ingest/api.py")) == "api"
    assert role_of("plan", Path("ingest/repository/streams.py")) == "repository"
    assert role_of("device_gateway", Path("signals/emg/onset.py")) == "domain"
    assert role_of("plan", Path("careplan_fhir.py")) is None
    sample = tmp_path / "api.py"
    sample.write_text(
        "from sqlmodel import select\n"
        "def route(session):\n"
        "    session.add(1)\n"
        "    return session.exec(select(int)).all()\n"
    )
    calls = orm_calls(Module("relearn.x.api", sample, "api"))
    assert sorted(c.split(": [orm] ")[1].split(" ")[0] for c in calls) == [
        ".exec(",
        "select(",
        "session.add(",
    ]
    assert sorted(c.split(": [orm]")[0] for c in calls) == [f"{sample}:3", f"{sample}:4", f"{sample}:4"]
    assert not orm_calls(Module("relearn.x.api", _write(tmp_path / "b.py", "d = {}\nd.get('a')\n"), "api"))
    by_session = "self._by_session.get(1)\nself._by_session.setdefault(session, set()).add(2)\n"
    assert not orm_calls(Module("relearn.x.api", _write(tmp_path / "c.py", by_session), "api"))
    real = "self._session.get(A, 1)\ndb.add(a)\nconn.flush()\nsession.merge(a)\n"
    assert len(orm_calls(Module("relearn.x.api", _write(tmp_path / "d.py", real), "api"))) == 4
    assert _shared_ok("relearn.shared.fhir.NotFound")
    assert not _shared_ok("relearn.shared.fhir.errors")
    assert not _shared_ok("relearn.shared.fhir.errors.NotFound")
    assert not _shared_ok("relearn.shared.db")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
