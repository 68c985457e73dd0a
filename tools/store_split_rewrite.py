#!/usr/bin/env python3
"""Rewrite a tree's uses of names that moved into dripd/store by aggregate (issue 18).

    python3 store_split_rewrite.py TREE [TREE ...] [--dry-run] [--no-ruff]

MOVES below says what moved where:
- dripd/store/queries.py was split by aggregate (contacts, enrollments, events, tasks,
  settings, reps, outbox) plus dripd/store/statements.py (Prepared, bulk_insert); it is
  gone, and MAPPING names every name it held and the module that now holds it;
- the oauth_tokens table's statements left dripd/mailbox/tokens.py for
  dripd/store/oauth_tokens.py (TOKENS); the rest of mailbox/tokens stays.

What it rewrites, in every *.py under TREE (not .git, .venv, node_modules, build):
- `queries.NAME` → `MODULE.NAME` (in dripd/store/MODULE.py itself: `NAME`);
- `monkeypatch.setattr(queries, "NAME", …)` → `monkeypatch.setattr(MODULE, "NAME", …)`;
- "dripd.store.queries.NAME" in strings (mock.patch targets) → "dripd.store.MODULE.NAME";
- `queries.NAME` in a comment;
- `from dripd.store import …, queries, …` (module level or inside a function) → the
  modules that import's scope uses, merged with what the line already imports (for a
  module that stays, like mailbox/tokens, its import stays while the scope uses it);
- `from dripd.store.queries import A, B` → one `from dripd.store.MODULE import …` per module.
The same for `tokens.NAME` with TOKENS. A module whose name is already a different name
in the file (`contacts` is also dripd.plan.contacts and schema.contacts; `events` a local
list) is imported as `store_MODULE`, as `store_engine` is. In *.md: `store.queries.NAME`
→ `store.MODULE.NAME`, `mailbox.tokens.NAME` → `store.oauth_tokens.NAME`.

Then `ruff check --select I --fix` and `ruff format` on the files it changed (the
tree's .venv/bin/ruff, else ruff on PATH), since names got longer.

Re-runnable: a tree with nothing left to move is not changed. It exits 1 and lists what
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
from dataclasses import dataclass
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

TOKENS: dict[str, str] = {
    name: "oauth_tokens"
    for name in (
        "Stored",
        "fresh_until",
        "MARGIN",
        "MARGIN_SHARE",
        "CLAIM",
        "_table",
        "read",
        "read_all",
        "save_sign_in",
        "forget",
        "_held_by",
        "claim",
        "save_refreshed",
        "release",
        "mark_lost",
        "reject_access",
    )
}


@dataclass(frozen=True, slots=True)
class Move:
    package: str  # where the old module is: dripd.store
    module: str  # its name: queries
    names: dict[str, str]  # name → the module of dripd.store that holds it now
    gone: bool  # whether the old module is deleted (every name moved)

    @property
    def dotted(self) -> str:
        return f"{self.package}.{self.module}"


MOVES = (
    Move("dripd.store", "queries", MAPPING, gone=True),
    Move("dripd.mailbox", "tokens", TOKENS, gone=False),
)
NAME = "([A-Za-z_][A-Za-z0-9_]*)"

SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "build", "dist", "__pycache__"}
Edit = tuple[int, int, int, int, str]  # start line, col, end line, col (1-based lines), text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
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
    leftovers = _leftovers(tree, problems)
    changed = []
    for path in sorted(_files(tree)):
        if path in leftovers or path.name == Path(__file__).name:
            continue
        text = path.read_text(encoding="utf-8")
        new = text
        for move in MOVES:
            if move.module not in new:
                continue
            if path.suffix == ".py":
                new = rewrite_python(path, new, move, problems)
            else:
                new = _rewrite_doc(new, move)
        if new != text:
            changed.append(path)
            if not dry_run:
                path.write_text(new, encoding="utf-8")
    return changed


def _leftovers(tree: Path, problems: list[str]) -> set[Path]:
    """The old modules that should be gone and are not (a merge brought one back)."""
    found = set()
    for move in MOVES:
        path = tree.joinpath(*move.package.split("."), f"{move.module}.py")
        if move.gone and path.exists():
            unmapped = sorted(set(_defined(path)) - set(move.names))
            problems.append(
                f"{path} still exists (move its definitions, then delete it);"
                f" names in it not in the mapping: {unmapped or 'none'}"
            )
            found.add(path)
        elif not move.gone and path.exists():
            still = sorted(set(_defined(path)) & set(move.names))
            if still:
                problems.append(f"{path} still defines {still}, which moved to dripd/store")
    return found


def _rewrite_doc(text: str, move: Move) -> str:
    last = move.package.rsplit(".", 1)[-1]
    pattern = re.compile(rf"{last}([./]){move.module}\.{NAME}")

    def replace(m: re.Match[str]) -> str:
        if m[2] not in move.names:
            return m[0]
        return f"store{m[1]}{move.names[m[2]]}.{m[2]}"

    return pattern.sub(replace, text)


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


class _Scope:
    """An import of the old module, and the lines it serves."""

    def __init__(self, node: ast.ImportFrom, first: int, last: int) -> None:
        self.node, self.first, self.last = node, first, last
        self.uses: set[str] = set()  # the store modules used there
        self.still = False  # the old module is still used there (a name that stayed)


@dataclass(frozen=True, slots=True)
class _File:
    path: Path
    move: Move
    own: str | None  # the dripd/store module this file is
    aliases: dict[str, str]  # store module → the name it is imported as here
    problems: list[str]

    def module_of(self, name: str) -> str | None:
        module = self.move.names.get(name)
        if module is None and self.move.gone:
            self.problems.append(f"{self.path}: {self.move.module}.{name} is not in the mapping")
        return module


def rewrite_python(path: Path, text: str, move: Move, problems: list[str]) -> str:
    tree = ast.parse(text)
    file = _File(path, move, _own_store_module(path), _aliases(tree, text, move), problems)
    scopes = _import_scopes(tree, file)
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    import_lines = _import_lines(tree, move)
    edits: list[Edit] = []
    for i, tok in enumerate(tokens):
        text_edit = _text_edit(tok, file)
        if text_edit is not None:
            edits.append(text_edit)
        elif (
            tok.type == tokenize.NAME
            and tok.string == move.module
            and tok.start[0] not in import_lines
        ):
            edits.extend(_use_edit(tokens, i, file, scopes))
    for scope in scopes:
        edits.extend(_import_edits(scope, file))
    edits.extend(_from_module_edits(tree, file))
    return _apply(text, edits)


def _use_edit(
    tokens: list[tokenize.TokenInfo], i: int, file: _File, scopes: list[_Scope]
) -> list[Edit]:
    """The rewrite of one `queries.NAME` (or `setattr(queries, "NAME"`)."""
    tok = tokens[i]
    before = _previous(tokens, i)
    if before is not None and before.string == ".":
        return []  # an attribute of something else (or dripd.store.queries in an import)
    name, after = _named(tokens, i)
    scope = _scope_at(scopes, tok.start[0])
    if name is None:
        if file.move.gone:
            file.problems.append(f"{file.path}:{tok.start[0]}: a `{tok.string}` it cannot place")
        elif scope is not None:
            scope.still = True
        return []
    module = file.module_of(name)
    if module is None:
        if scope is not None:
            scope.still = True
        return []
    if module == file.own and after is not None and after.string == ".":
        return [(*tok.start, *after.end, "")]  # queries.NAME in NAME's own module
    if scope is not None:
        scope.uses.add(module)
    return [(*tok.start, *tok.end, file.aliases.get(module, module))]


def _text_edit(tok: tokenize.TokenInfo, file: _File) -> Edit | None:
    """The rewrite of a string or comment naming something that moved, if any."""
    move = file.move
    if tok.type == tokenize.STRING and f"{move.dotted}." in tok.string:
        pattern = re.compile(re.escape(move.dotted) + r"\." + NAME)

        def dotted(m: re.Match[str]) -> str:
            module = file.module_of(m[1])
            return f"dripd.store.{module}.{m[1]}" if module else m[0]

        return (*tok.start, *tok.end, pattern.sub(dotted, tok.string))
    if tok.type == tokenize.COMMENT and f"{move.module}." in tok.string:
        pattern = re.compile(rf"\b{move.module}\.{NAME}")

        def comment(m: re.Match[str]) -> str:
            return f"{move.names[m[1]]}.{m[1]}" if m[1] in move.names else m[0]

        return (*tok.start, *tok.end, pattern.sub(comment, tok.string))
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


def _aliases(tree: ast.Module, text: str, move: Move) -> dict[str, str]:
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
    for module in set(move.names.values()):
        if module in taken:
            result[module] = taken[module]
        elif module in names:
            result[module] = f"store_{module}"
    return result


def _import_scopes(tree: ast.Module, file: _File) -> list[_Scope]:
    scopes = []
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    move = file.move
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == move.dotted:
                    file.problems.append(f"{file.path}:{node.lineno}: `import {move.dotted}`")
        if not (isinstance(node, ast.ImportFrom) and node.module == move.package):
            continue
        for alias in node.names:
            if alias.name == move.module and alias.asname not in (None, move.module):
                file.problems.append(
                    f"{file.path}:{node.lineno}: {move.module} imported as {alias.asname}"
                )
        if not any(alias.name == move.module for alias in node.names):
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


def _import_lines(tree: ast.Module, move: Move) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in (move.package, move.dotted):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def _import_edits(scope: _Scope, file: _File) -> list[Edit]:
    node, move = scope.node, file.move
    keep_old = scope.still and not move.gone
    old = [(a.name, a.asname) for a in node.names if a.name != move.module or keep_old]
    new = [
        (module, alias if alias != module else None)
        for module in sorted(scope.uses - {file.own})
        if (alias := file.aliases.get(module, module))
    ]
    if move.package == "dripd.store":
        have = {name for name, _ in old}
        lines = [_from_import(move.package, old + [n for n in new if n[0] not in have])]
    else:
        lines = [_from_import(move.package, old), _from_import("dripd.store", new)]
    lines = [line for line in lines if line]
    end_col = node.end_col_offset if node.end_col_offset is not None else 0
    line_end = node.end_lineno or node.lineno
    if not lines:  # drop the whole line(s)
        return [(node.lineno, 0, line_end + 1, 0, "")]
    text = ("\n" + " " * node.col_offset).join(lines)
    return [(node.lineno, node.col_offset, line_end, end_col, text)]


def _from_import(package: str, names: list[tuple[str, str | None]]) -> str:
    if not names:
        return ""
    listed = ", ".join(f"{n} as {a}" if a else n for n, a in sorted(names))
    return f"from {package} import {listed}"


def _from_module_edits(tree: ast.Module, file: _File) -> list[Edit]:
    """`from dripd.store.queries import A, B` → one import per module of A and B."""
    edits: list[Edit] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ImportFrom) and node.module == file.move.dotted):
            continue
        by_module: dict[str, list[str]] = {}
        for alias in node.names:
            module = file.module_of(alias.name)
            package = f"dripd.store.{module}" if module else file.move.dotted
            text_name = f"{alias.name} as {alias.asname}" if alias.asname else alias.name
            by_module.setdefault(package, []).append(text_name)
        lines = [
            f"from {package} import {', '.join(names)}"
            for package, names in sorted(by_module.items())
        ]
        new = ("\n" + " " * node.col_offset).join(lines)
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
