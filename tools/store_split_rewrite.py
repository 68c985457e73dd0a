#!/usr/bin/env python3
"""Rewrite a tree's uses of dripd/store/queries.py to the store modules it was split into.

    python3 store_split_rewrite.py TREE [TREE ...] [--dry-run] [--no-ruff]

Issue 18 split dripd/store/queries.py by aggregate (contacts, enrollments, events,
tasks, settings, reps, outbox) plus dripd/store/statements.py (Prepared, bulk_insert).
MAPPING below is the whole split: every public and private name queries.py held, and
the module it now lives in.

What it rewrites, in every *.py under TREE (not .git, .venv, node_modules, build):
- `queries.NAME` → `MODULE.NAME` (in dripd/store/MODULE.py itself: `NAME`);
- `monkeypatch.setattr(queries, "NAME", …)` → `monkeypatch.setattr(MODULE, "NAME", …)`;
- "dripd.store.queries.NAME" in strings (mock.patch targets) → "dripd.store.MODULE.NAME";
- `from dripd.store import …, queries, …` (module level or inside a function) → the
  modules that import's scope uses, merged with what the line already imports;
- `from dripd.store.queries import A, B` → one `from dripd.store.MODULE import …` per module.
A module whose name is already a different name in the file (`contacts` is also
dripd.plan.contacts and schema.contacts; `events` a local list) is imported as
`store_MODULE`, as `store_engine` is. In *.md: `store.queries.NAME` → `store.MODULE.NAME`.

Then `ruff check --select I --fix` and `ruff format` on the files it changed (the
tree's .venv/bin/ruff, else ruff on PATH), since names got longer.

Re-runnable: a tree with no `queries` left is not changed. It exits 1 and lists what
it could not place: a name not in MAPPING (someone added a query to queries.py: move
it to its module, add it here, rerun), `import dripd.store.queries`, an alias.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

MAPPING: dict[str, str] = {
    # statements: SQLAlchemy statements run on the DBAPI connection
    "Prepared": "statements",
    "_Compiled": "statements",
    "_PREPARED": "statements",
    "prepared": "statements",
    "bulk_insert": "statements",
    "_BulkPlan": "statements",
    "_bulk_plan": "statements",
    "_insert_for": "statements",
    "_apply": "statements",
    "_converter": "statements",
    # contacts
    "Contact": "contacts",
    "_CONTACT_BY_ID": "contacts",
    "_UPDATE_CONTACT": "contacts",
    "_COUNT_TOUCH": "contacts",
    "_CONTACTS_BY_IDS": "contacts",
    "_COUNT_TOUCH_PREPARED": "contacts",
    "contact_from_row": "contacts",
    "_contact": "contacts",
    "contact_by_email": "contacts",
    "contact_by_id": "contacts",
    "contacts_by_ids": "contacts",
    "list_contacts": "contacts",
    "contacts_page": "contacts",
    "active_campaigns": "contacts",
    "contact_ids_owned_by": "contacts",
    "existing_keys": "contacts",
    "max_contact_id": "contacts",
    "contact_ids_after": "contacts",
    "insert_contact": "contacts",
    "update_contact": "contacts",
    "count_touch": "contacts",
    "count_touches": "contacts",
    "stage_counts": "contacts",
    "status_counts": "contacts",
    # enrollments
    "Enrollment": "enrollments",
    "_ENROLLMENT_BY_ID": "enrollments",
    "_UPDATE_ENROLLMENT": "enrollments",
    "_ACTIVE_ENROLLMENTS": "enrollments",
    "_DUE": "enrollments",
    "_DUE_LOCKED": "enrollments",
    "_enrollment": "enrollments",
    "active_enrollments": "enrollments",
    "enrollments_of": "enrollments",
    "all_active_enrollments": "enrollments",
    "any_active": "enrollments",
    "insert_enrollment": "enrollments",
    "update_enrollment": "enrollments",
    "due_enrollments": "enrollments",
    "due_page": "enrollments",
    "WAITING_PAGE": "enrollments",
    "waiting_enrollments": "enrollments",
    "recheck_enrollments": "enrollments",
    "enrollment_counts": "enrollments",
    "due_count": "enrollments",
    "enrollment_by_id": "enrollments",
    # events
    "_INSERT_EVENT": "events",
    "add_event": "events",
    "add_events": "events",
    "event_times": "events",
    "history": "events",
    "step_counts": "events",
    # tasks
    "open_tasks": "tasks",
    "task_by_id": "tasks",
    "update_task": "tasks",
    # settings
    "setting": "settings",
    "put_setting": "settings",
    # reps
    "_REP_PAUSES": "reps",
    "rep_pauses": "reps",
    "set_rep_pause": "reps",
    # outbox (the store module that already held the outbox's statements)
    "outbox_backlog": "outbox",
}

QUERIES = "dripd.store.queries"
SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "build", "dist", "__pycache__"}
STRING_TARGET = re.compile(r"dripd\.store\.queries\.([A-Za-z_][A-Za-z0-9_]*)")
DOC_TARGET = re.compile(r"store([./])queries\.([A-Za-z_][A-Za-z0-9_]*)")
COMMENT_TARGET = re.compile(r"\bqueries\.([A-Za-z_][A-Za-z0-9_]*)")
Edit = tuple[int, int, int, int, str]  # start line, col, end line, col (1-based lines), text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="list, don't write")
    parser.add_argument("--no-ruff", action="store_true", help="don't run ruff afterwards")
    args = parser.parse_args()
    problems: list[str] = []
    for tree in args.trees:
        changed = rewrite_tree(tree.resolve(), args.dry_run, problems)
        for path in changed:
            print(f"rewrote {path}")
        if changed and not args.dry_run and not args.no_ruff:
            run_ruff(tree.resolve(), [p for p in changed if p.suffix == ".py"])
    for problem in problems:
        print(f"NOT PLACED: {problem}", file=sys.stderr)
    return 1 if problems else 0


def rewrite_tree(tree: Path, dry_run: bool, problems: list[str]) -> list[Path]:
    leftover = tree / "dripd" / "store" / "queries.py"
    if leftover.exists():
        names = _defined(leftover)
        unmapped = sorted(set(names) - set(MAPPING))
        problems.append(
            f"{leftover} still exists (delete it after moving its definitions);"
            f" names in it not in MAPPING: {unmapped or 'none'}"
        )
    changed = []
    for path in sorted(_files(tree)):
        text = path.read_text(encoding="utf-8")
        if "queries" not in text:
            continue
        if path == leftover or path.name == Path(__file__).name:
            continue
        if path.suffix == ".py":
            new = rewrite_python(path, text, problems)
        else:
            new = DOC_TARGET.sub(
                lambda m: f"store{m[1]}{MAPPING[m[2]]}.{m[2]}" if m[2] in MAPPING else m[0], text
            )
        if new != text:
            changed.append(path)
            if not dry_run:
                path.write_text(new, encoding="utf-8")
    return changed


def _files(tree: Path) -> list[Path]:
    found = []
    for path in tree.rglob("*"):
        if any(part in SKIP_DIRS for part in path.relative_to(tree).parts):
            continue
        if path.is_file() and path.suffix in (".py", ".md"):
            found.append(path)
    return found


def _defined(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names.extend(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


def _module_of(name: str, path: Path, problems: list[str]) -> str:
    module = MAPPING.get(name)
    if module is None:
        problems.append(f"{path}: queries.{name} is not in MAPPING")
        return "queries"
    return module


def _comment(match: re.Match[str], path: Path, problems: list[str]) -> str:
    """`queries.NAME` in a comment, when NAME is one of queries.py's."""
    name = match[1]
    return f"{MAPPING[name]}.{name}" if name in MAPPING else match[0]


def rewrite_python(path: Path, text: str, problems: list[str]) -> str:
    tree = ast.parse(text)
    own = _own_store_module(path)
    aliases = _aliases(tree, text)
    scopes = _import_scopes(tree, path, problems)
    uses: dict[int, set[str]] = {id(scope): set() for scope in scopes}
    edits: list[Edit] = []
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    import_lines = _import_lines(tree)
    for i, tok in enumerate(tokens):
        text_edit = _text_edit(tok, path, problems)
        if text_edit is not None:
            edits.append(text_edit)
            continue
        if tok.type != tokenize.NAME or tok.string != "queries" or tok.start[0] in import_lines:
            continue
        before = _previous(tokens, i)
        if before is not None and before.string == ".":
            continue  # dripd.store.queries in an `import` handled above, or another attribute
        name, after = _named(tokens, i)
        if name is None:
            problems.append(f"{path}:{tok.start[0]}: a use of `queries` it cannot place")
            continue
        module = _module_of(name, path, problems)
        if module == "queries":
            continue
        if module == own and after is not None and after.string == ".":
            edits.append((*tok.start, *after.end, ""))  # queries.NAME in NAME's own module
            continue
        scope = _scope_at(scopes, tok.start[0])
        if scope is not None:
            uses[id(scope)].add(module)
        edits.append((*tok.start, *tok.end, aliases.get(module, module)))
    for scope in scopes:
        edits.extend(_import_edits(scope, uses[id(scope)], aliases, own, text))
    edits.extend(_from_queries_edits(tree, text, aliases, path, problems))
    return _apply(text, edits)


def _text_edit(tok: tokenize.TokenInfo, path: Path, problems: list[str]) -> Edit | None:
    """The rewrite of a string or comment naming something of queries.py, if any."""
    if tok.type == tokenize.STRING and "dripd.store.queries." in tok.string:
        new = STRING_TARGET.sub(
            lambda m: f"dripd.store.{_module_of(m[1], path, problems)}.{m[1]}", tok.string
        )
        return (*tok.start, *tok.end, new)
    if tok.type == tokenize.COMMENT and "queries." in tok.string:
        new = COMMENT_TARGET.sub(lambda m: _comment(m, path, problems), tok.string)
        return (*tok.start, *tok.end, new)
    return None


def _named(
    tokens: list[tokenize.TokenInfo], i: int
) -> tuple[str | None, tokenize.TokenInfo | None]:
    """The name `queries` at i stands for: `queries.NAME`, `setattr(queries, "NAME"`."""
    after = _next(tokens, i)
    if after is None or after.string not in (".", ","):
        return None, after
    following = _next(tokens, tokens.index(after))
    if following is None:
        return None, after
    if after.string == "." and following.type == tokenize.NAME:
        return following.string, after
    if after.string == "," and following.type == tokenize.STRING:
        value = ast.literal_eval(following.string)
        return (value if isinstance(value, str) else None), after
    return None, after


def _own_store_module(path: Path) -> str | None:
    parts = path.parts
    if len(parts) >= 3 and parts[-3:-1] == ("dripd", "store"):
        return path.stem
    return None


def _aliases(tree: ast.Module, text: str) -> dict[str, str]:
    """module → the name to use for it: the name it is already imported as, else
    `store_MODULE` when its own name means something else in this file."""
    taken: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "dripd.store":
            for alias in node.names:
                taken[alias.name] = alias.asname or alias.name
    names = set()
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    for i, tok in enumerate(tokens):
        if tok.type == tokenize.NAME:
            before = _previous(tokens, i)
            if before is None or before.string != ".":
                names.add(tok.string)
    result = {}
    for module in set(MAPPING.values()):
        if module in taken:
            result[module] = taken[module]
        elif module in names:
            result[module] = f"store_{module}"
    return result


class _Scope:
    """An `from dripd.store import … queries …` and the lines it serves."""

    def __init__(self, node: ast.ImportFrom, first: int, last: int) -> None:
        self.node, self.first, self.last = node, first, last


def _import_scopes(tree: ast.Module, path: Path, problems: list[str]) -> list[_Scope]:
    scopes = []
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "dripd.store.queries":
                    problems.append(f"{path}:{node.lineno}: `import dripd.store.queries`")
        if not (isinstance(node, ast.ImportFrom) and node.module == "dripd.store"):
            continue
        for alias in node.names:
            if alias.name == "queries" and alias.asname not in (None, "queries"):
                problems.append(f"{path}:{node.lineno}: queries imported as {alias.asname}")
        if not any(alias.name == "queries" for alias in node.names):
            continue
        enclosing = [f for f in functions if f.lineno <= node.lineno <= (f.end_lineno or f.lineno)]
        if enclosing:
            inner = max(enclosing, key=lambda f: f.lineno)
            # from its body on: names in its signature are the enclosing scope's
            scopes.append(_Scope(node, inner.body[0].lineno, inner.end_lineno or inner.lineno))
        else:
            scopes.append(_Scope(node, 1, 10**9))
    return scopes


def _scope_at(scopes: list[_Scope], line: int) -> _Scope | None:
    containing = [s for s in scopes if s.first <= line <= s.last]
    return min(containing, key=lambda s: s.last - s.first) if containing else None


def _import_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("dripd.store", QUERIES):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def _import_edits(
    scope: _Scope, used: set[str], aliases: dict[str, str], own: str | None, text: str
) -> list[Edit]:
    node = scope.node
    kept = [(a.name, a.asname) for a in node.names if a.name != "queries"]
    have = {name for name, _ in kept}
    for module in sorted(used):
        if module not in have and module != own:
            alias = aliases.get(module, module)
            kept.append((module, alias if alias != module else None))
    kept.sort(key=lambda pair: pair[0])
    if kept:
        names = ", ".join(f"{n} as {a}" if a else n for n, a in kept)
        new = f"from dripd.store import {names}"
    else:
        new = ""
    end_col = node.end_col_offset if node.end_col_offset is not None else 0
    line_end = node.end_lineno or node.lineno
    if not new:  # drop the whole line(s)
        return [(node.lineno, 0, line_end + 1, 0, "")]
    return [(node.lineno, node.col_offset, line_end, end_col, new)]


def _from_queries_edits(
    tree: ast.Module, text: str, aliases: dict[str, str], path: Path, problems: list[str]
) -> list[Edit]:
    edits: list[Edit] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ImportFrom) and node.module == "dripd.store.queries"):
            continue
        by_module: dict[str, list[str]] = {}
        for alias in node.names:
            module = _module_of(alias.name, path, problems)
            text_name = f"{alias.name} as {alias.asname}" if alias.asname else alias.name
            by_module.setdefault(module, []).append(text_name)
        indent = " " * node.col_offset
        lines = [
            f"from dripd.store.{module} import {', '.join(names)}"
            for module, names in sorted(by_module.items())
        ]
        new = ("\n" + indent).join(lines)
        end_col = node.end_col_offset if node.end_col_offset is not None else 0
        edits.append((node.lineno, node.col_offset, node.end_lineno or node.lineno, end_col, new))
    return edits


def _previous(tokens: list[tokenize.TokenInfo], i: int) -> tokenize.TokenInfo | None:
    for tok in reversed(tokens[:i]):
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
            return tok
    return None


def _next(tokens: list[tokenize.TokenInfo], i: int) -> tokenize.TokenInfo | None:
    for tok in tokens[i + 1 :]:
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
            return tok
    return None


def _apply(text: str, edits: list[Edit]) -> str:
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(line: int, col: int) -> int:
        if line - 1 >= len(lines):
            return len(text)
        # tokenize and ast columns: characters (ast's are UTF-8 bytes; imports are ASCII)
        return starts[line - 1] + col

    spans = sorted(((offset(a, b), offset(c, d), new) for a, b, c, d, new in edits), reverse=True)
    last_start = len(text) + 1
    for start, end, new in spans:
        if end > last_start:
            raise SystemExit(f"overlapping edits at offset {start}")
        text = text[:start] + new + text[end:]
        last_start = start
    return text


def run_ruff(tree: Path, files: list[Path]) -> None:
    if not files:
        return
    local = tree / ".venv" / "bin" / "ruff"
    ruff = str(local) if local.exists() else shutil.which("ruff")
    if ruff is None:
        print("ruff not found: run `ruff check --select I --fix` and `ruff format` yourself")
        return
    names = [str(f) for f in files]
    subprocess.run([ruff, "check", "--select", "I", "--fix", "--quiet", *names], cwd=tree)
    subprocess.run([ruff, "format", "--quiet", *names], cwd=tree)


if __name__ == "__main__":
    sys.exit(main())
