"""The shape of the package a newcomer reads (issue 44's measures): few top-level modules, a thin
``__main__``, no function too long to read at once. ``lint-imports`` (in ``.ci/run``) checks the
layers; these check what it cannot."""

import ast
from pathlib import Path

DRIFT = Path(__file__).resolve().parents[1] / "drift"
MAX_FUNCTION_LINES = 80


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_in_drift_is_over_80_lines():
    long = [
        f"{p.relative_to(DRIFT.parent)}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1} lines)"
        for p in sorted(DRIFT.rglob("*.py"))
        for f in _functions(p)
        if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, "split these functions:\n" + "\n".join(long)


def test_the_checker_counts_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    path = tmp_path / "long.py"
    path.write_text(f"def long():\n{body}\n")
    (f,) = _functions(path)
    assert f.end_lineno - f.lineno + 1 == MAX_FUNCTION_LINES + 1


def test_drift_has_at_most_12_top_level_modules_and_a_thin_main():
    modules = sorted(p.name for p in DRIFT.glob("*.py"))
    assert len(modules) <= 12, modules
    assert len((DRIFT / "__main__.py").read_text().splitlines()) <= 150
    packages = sorted(p.name for p in DRIFT.iterdir() if (p / "__init__.py").is_file())
    assert packages == ["cli", "editors", "evaluation", "interp", "model", "util"]
