"""Mutation testing of the modules with fast tests: ``python3 build.py mutate [module ...]``.

Runs inside ``.venv`` (mutmut is pinned in its lock). Each module is mutated
against only its own fast test file(s), one module at a time, in a throw-away
copy of the tree (mutmut writes a ``mutants/`` folder where it runs; the
working tree is never touched). Prints one table and writes it to
``out/mutation/`` (``mutation.md`` and ``mutation.json``), with each module's
surviving mutants as diffs in ``out/mutation/<module>.survivors.txt``.

Not part of ``build.py test`` or CI: a full run takes many minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "mutation"
PKG = "runway_addon"

# Module (relative to runway_addon/) -> its fast test files. Only these run per mutant.
MODULES: dict[str, tuple[str, ...]] = {
    "core/validation.py": ("tests/core/test_validation.py", "tests/core/test_validation_issues.py"),
    "core/spec.py": ("tests/core/test_spec.py",),
    "core/catalog.py": ("tests/core/test_catalog.py",),
    "blender/images.py": ("tests/blender/test_images.py",),
    "core/jobs/job.py": ("tests/core/test_jobs_fast.py",),
    "core/jobs/events.py": ("tests/core/test_jobs_fast.py",),
    "core/jobs/queue.py": ("tests/core/test_jobs_fast.py",),
    "core/jobs/pool.py": ("tests/core/test_jobs_fast.py",),
    **{f"core/codecs/{m}.py": ("tests/core/test_codecs.py",)
       for m in ("naming", "pixels", "colour", "png", "exr", "transport", "values")},
}

# Property tests left out of mutation runs: each fuzzes hundreds of values and would
# run for every mutant that the exact tests before it let through.
LEFT_OUT: dict[str, tuple[str, ...]] = {
    "core/validation.py": ("tests/core/test_validation.py::"
                           "test_garbage_only_ever_raises_spec_validation_error",),
    # (and a subprocess that only checks imports)
    **{f"core/codecs/{m}.py": tuple(f"tests/core/test_codecs.py::{t}" for t in (
        "test_garbage_raises_codec_error_unless_it_is_a_value_of_the_type",
        "test_random_and_truncated_image_bytes_raise_codec_error",
        "test_core_never_imports_bpy"))
       for m in ("naming", "pixels", "colour", "png", "exr", "transport", "values")},
}

# mutmut stops a mutant after (its tests' time + constant) x multiplier seconds. A mutant
# of the job engine that hangs waits without using CPU, so its bound is tighter there.
TIMEOUTS = {m: (3.0, 5.0) for m in ("core/jobs/queue.py", "core/jobs/pool.py")}

# Top-level folders a test run never needs (environments, build outputs, caches).
NOT_COPIED = {".git", "dist", "build", "out", "wheels", ".cache", ".hypothesis",
              ".pytest_cache", "mutants"}
# mutmut runs the tests in mutants/: what they import or read besides the package.
ALSO_COPIED = ("pytest.ini", "blender_manifest.toml", "buildtools", "models", "build.py")
# The smallest pytest run: stop at the first failure, no cache written into the copy.
PYTEST_ARGS = ("-x", "-q", "-p", "no:cacheprovider")

# mutmut's statuses folded into the table's columns: a crash kills a mutant; a
# mutant no selected test reaches survives (no test would notice it).
COLUMN = {"killed": "killed", "segfault": "killed", "caught by type check": "killed",
          "survived": "survived", "no tests": "survived",
          "timeout": "timeout", "suspicious": "timeout"}


def _copy_tree(dest: Path, tests: tuple[str, ...]) -> None:
    """The tree as tests see it (package, tests, build tools, model folders), without
    environments and build outputs; environments are used from where they are."""
    def ignore(folder, names):
        top = Path(folder) == ROOT
        return {n for n in names if n in ("__pycache__",) or n.endswith(".pyc")
                or (top and (n in NOT_COPIED or n.startswith(".venv")))}
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True, dirs_exist_ok=True)
    _check_tests(dest, tests)


def _export_revision(dest: Path, rev: str, tests: tuple[str, ...]) -> None:
    """The tree as committed at ``rev`` (for scores before a change)."""
    archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    _check_tests(dest, tests)


def _check_tests(dest: Path, tests: tuple[str, ...]) -> None:
    missing = [t for t in tests if not (dest / t).exists()]
    if missing:
        raise SystemExit(f"mutate: test file(s) missing: {', '.join(missing)}")


def _setup_cfg(module: str, tests: tuple[str, ...]) -> str:
    def lines(items):
        return "".join(f"\n    {i}" for i in items)
    deselect = tuple(f"--deselect={t}" for t in LEFT_OUT.get(module, ()))
    return ("[mutmut]\n"
            f"source_paths ={lines([PKG])}\n"
            f"only_mutate ={lines([f'{PKG}/{module}'])}\n"
            f"pytest_add_cli_args_test_selection ={lines(tests)}\n"
            f"pytest_add_cli_args ={lines(PYTEST_ARGS + deselect)}\n"
            f"also_copy ={lines(ALSO_COPIED)}\n"
            # Git-based change detection looks for a repository the copy does not have.
            "use_git_change_detection = false\n"
            + (f"timeout_multiplier = {TIMEOUTS[module][0]}\n"
               f"timeout_constant = {TIMEOUTS[module][1]}\n" if module in TIMEOUTS else ""))


def _statuses(work: Path, module: str) -> dict[str, str]:
    from mutmut.stats import status_by_exit_code
    meta = work / "mutants" / PKG / (module + ".meta")
    if not meta.exists():
        raise SystemExit(f"mutate: mutmut wrote no results for {module} (see its output above)")
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {name: status_by_exit_code[code] for name, code in codes.items()}


def run_module(module: str, max_children: int, keep: bool, rev: str = "",
               minutes: float = 0) -> dict:
    tests = MODULES[module]
    work = Path(tempfile.mkdtemp(prefix="runway-mutate-"))
    try:
        if rev:
            _export_revision(work, rev, tests)
        else:
            _copy_tree(work, tests)
        (work / "setup.cfg").write_text(_setup_cfg(module, tests))
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        env.pop("MUTANT_UNDER_TEST", None)
        print(f"== {module} against {' '.join(tests)} (in {work})", flush=True)
        proc = subprocess.Popen([sys.executable, "-m", "mutmut", "run",
                                 "--max-children", str(max_children)], cwd=work, env=env)
        try:
            proc.wait(timeout=minutes * 60 if minutes else None)
        except subprocess.TimeoutExpired:
            # mutmut stops on SIGINT and keeps what it tested; the rest stays untested.
            print(f"mutate: {module}: {minutes} min are up, stopping", flush=True)
            proc.send_signal(signal.SIGINT)
            proc.wait()
        if proc.returncode != 0:
            raise SystemExit(f"mutate: mutmut failed for {module} (exit {proc.returncode})")
        statuses = _statuses(work, module)
        survivors = sorted(n for n, st in statuses.items() if COLUMN.get(st) == "survived")
        diffs = _diffs(work, module, survivors)
    finally:
        if keep:
            print(f"   kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    row = {"module": module, "mutants": 0, "killed": 0, "survived": 0, "timeout": 0,
           "untested": 0}
    for status in statuses.values():
        column = COLUMN.get(status)
        if column:
            row[column] += 1
            row["mutants"] += 1
        elif status == "not checked":  # a run stopped by --minutes
            row["untested"] += 1
    detected = row["killed"] + row["timeout"]
    row["score"] = round(100.0 * detected / row["mutants"], 1) if row["mutants"] else None
    row["survivors"] = survivors
    row["diffs"] = diffs
    return row


_SHOW = """
import sys
from pathlib import Path
from mutmut.mutation.diff_apply import get_diff_for_mutant
for name in sys.argv[2:]:
    print(f"# {name}")
    print(get_diff_for_mutant(name, path=Path(sys.argv[1])))
"""


def _diffs(work: Path, module: str, names: list[str]) -> str:
    """Each surviving mutant's diff (what the tests let through), in one process."""
    if not names:
        return ""
    proc = subprocess.run([sys.executable, "-c", _SHOW, f"{PKG}/{module}", *names], cwd=work,
                          capture_output=True, text=True)
    return proc.stdout + proc.stderr


def _untested(row) -> str:
    return f" ({row['untested']} not tested: stopped)" if row.get("untested") else ""


def _score(score) -> str:
    return "-" if score is None else f"{score:.1f} %"


def table(rows: list[dict]) -> str:
    head = "| module | mutants | killed | survived | timeout | score |\n|---|---|---|---|---|---|\n"
    body = "".join(
        f"| {r['module']}{_untested(r)} | {r['mutants']} | {r['killed']} | {r['survived']} "
        f"| {r['timeout']} "
        f"| {_score(r['score'])} |\n" for r in rows)
    return head + body


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="build.py mutate", description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="module",
                        help=f"paths under {PKG}/ (default: all of {', '.join(MODULES)})")
    parser.add_argument("--max-children", type=int, default=2,
                        help="mutants tested at once (default 2)")
    parser.add_argument("--keep", action="store_true",
                        help="keep each module's temporary copy (to `mutmut show` a survivor)")
    parser.add_argument("--at", default="", metavar="REV",
                        help="the tree as committed at this git revision instead of the "
                             "working tree (scores before a change)")
    parser.add_argument("--minutes", type=float, default=0,
                        help="stop each module after this long and score what was tested")
    args = parser.parse_args(argv)
    chosen = [m.removeprefix(f"{PKG}/") for m in args.modules] or list(MODULES)
    unknown = [m for m in chosen if m not in MODULES]
    if unknown:
        parser.error(f"no fast tests are known for {', '.join(unknown)}; known: "
                     f"{', '.join(MODULES)}")
    rows = [run_module(m, args.max_children, args.keep, args.at, args.minutes)
            for m in chosen]
    out = OUT / args.at if args.at else OUT  # a revision's table beside the tree's
    text = table(rows)
    print("\n" + text)
    out.mkdir(parents=True, exist_ok=True)
    for r in rows:
        name = r["module"].replace("/", "_").removesuffix(".py")
        (out / f"{name}.survivors.txt").write_text(r.pop("diffs"))
    # Modules run one at a time add up: earlier rows of other modules are kept.
    saved = out / "mutation.json"
    by_module = {r["module"]: r for r in json.loads(saved.read_text())} if saved.exists() else {}
    by_module.update({r["module"]: r for r in rows})
    merged = sorted(by_module.values(), key=lambda r: (list(MODULES).index(r["module"])
                                                       if r["module"] in MODULES else 99,
                                                       r["module"]))
    saved.write_text(json.dumps(merged, indent=2) + "\n")
    (out / "mutation.md").write_text(table(merged))
    print(f"wrote {out / 'mutation.md'} ({len(merged)} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
