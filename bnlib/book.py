"""Execute chapter notebooks with papermill and build the Jupyter Book.

``notebooks/<chapter>.ipynb`` are the sources (outputs stripped). ``execute`` validates the
parameters first (fail fast, before a kernel starts), then runs papermill into
``book/chapters/<chapter>.ipynb``, which the book renders (``execute_notebooks: off``). A
stamp beside each executed notebook records the hash of its source, parameters and bnlib's
code; an unchanged chapter is not executed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import chapters, runs

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "book" / "chapters"
SUMMARY = ROOT / "book" / "summary"      # the answer and execution pages, from the executed chapters
BACK_PAGES = ("answer", "execution")


def toc_chapters(root: Path = ROOT) -> list[str]:
    """Chapters listed in ``_toc.yml`` (entries ``book/chapters/<name>``), in book order."""
    import yaml

    names: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            f = node.get("file", "")
            if f.startswith("book/chapters/"):
                names.append(Path(f).stem)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(yaml.safe_load((root / "_toc.yml").read_text()))
    return names


# Kernels draw figures with the inline backend whatever the caller's environment says: with
# MPLBACKEND=Agg (common on headless machines) every figure would silently vanish from the pages.
KERNEL_ENV = {"MPLBACKEND": "module://matplotlib_inline.backend_inline"}
_env_lock, _env_users, _env_saved = threading.Lock(), [0], {}


@contextmanager
def kernel_env():
    """``KERNEL_ENV`` set for every kernel started inside (threads included), restored after the last."""
    with _env_lock:
        if _env_users[0] == 0:
            _env_saved.clear()
            _env_saved.update({k: os.environ.get(k) for k in KERNEL_ENV})
            os.environ.update(KERNEL_ENV)
        _env_users[0] += 1
    try:
        yield
    finally:
        with _env_lock:
            _env_users[0] -= 1
            if _env_users[0] == 0:
                for k, v in _env_saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v


def papermill(src: Path, out: Path, parameters: dict, *, progress: bool = True, injected: str = "hide-input") -> None:
    """Execute ``src`` into ``out`` with papermill, in the repository root, with ``KERNEL_ENV``;
    the cell papermill injects gets the tag ``injected``."""
    import papermill as pm

    with kernel_env():
        pm.execute_notebook(str(src), str(out), parameters=parameters, cwd=str(ROOT),
                            progress_bar=progress, kernel_name="python3")
    _tag_injected(Path(out), injected)


def _tag_injected(notebook: Path, tag: str) -> None:
    """Tag the cell papermill injects (the values this execution used). A chapter keeps it behind
    a toggle (``hide-input``: the page shows the parameters cell and the settings header, the
    exact values one click away); the summary pages remove it."""
    nb = json.loads(notebook.read_text())
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and tag not in tags:
            tags.append(tag)
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def _stamp(chapter: str, parameters: dict) -> str:
    src = (NOTEBOOKS / f"{chapter}.ipynb").read_bytes()
    blob = json.dumps({"params": parameters, "code": runs.code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(src + blob.encode()).hexdigest()


def execute(chapter: str, *, profile: str = "quick", params: dict | None = None,
            out: Path | None = None, force: bool = False, progress: bool = True) -> Path:
    """Validate, then execute ``notebooks/<chapter>.ipynb`` with papermill into ``out``."""
    params = dict(params or {})
    out = Path(out) if out else EXECUTED / f"{chapter}.ipynb"
    if chapter in LAST and "chapters_dir" not in params:  # it reads the chapters executed beside it
        beside = any((out.parent / f"{n}.ipynb").exists() for n in toc_chapters() if n != chapter)
        params["chapters_dir"] = str(out.parent if beside else EXECUTED)
    chapters.resolve(chapter, profile, **params)  # raises before any kernel starts
    parameters = {"profile": profile, **params}
    stamp_file = out.with_name(f".{out.stem}.stamp")
    stamp = _stamp(chapter, parameters)
    if not force and out.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        print(f"[bnlib] {chapter}: unchanged since its last execution, skipped")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    stamp_file.unlink(missing_ok=True)
    os.environ.setdefault("BNLIB_RUNS", str(ROOT / "_runs"))
    t0 = time.perf_counter()
    print(f"[bnlib] executing {chapter} (profile {profile}, parameters {params or 'default'})")
    papermill(NOTEBOOKS / f"{chapter}.ipynb", out, parameters, progress=progress)
    stamp_file.write_text(stamp)
    print(f"[bnlib] {chapter}: done in {time.perf_counter() - t0:.0f} s -> {out}")
    return out


def summarise(chapters_dir: Path = EXECUTED, out_dir: Path = SUMMARY, *, progress: bool = True) -> None:
    """Execute the answer and execution pages (``notebooks/summary/``) from the chapters in
    ``chapters_dir``: they read what the chapters glued, so they always agree with them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in BACK_PAGES:
        papermill(NOTEBOOKS / "summary" / f"{name}.ipynb", out_dir / f"{name}.ipynb",
                  {"chapters_dir": str(Path(chapters_dir).resolve())}, progress=progress, injected="remove-cell")


def stage(dest: Path) -> Path:
    """Copy the book's sources (configuration, intro, references, extension, static files) to
    ``dest``, so a book executed elsewhere (the tests' smoke book) can be built there."""
    import shutil

    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "book", dest / "book", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("chapters", "summary", "__pycache__"))
    return dest


def build(root: Path = ROOT, *, strict: bool = True, log: Path | None = None) -> int:
    """``jupyter-book build ROOT -W -n --keep-going`` with this interpreter's jupyter-book
    (its output into ``log`` if given)."""
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe if exe.exists() else "jupyter-book"), "build", str(root)]
    cmd += ["-W", "-n", "--keep-going"] if strict else []
    print("[bnlib]", " ".join(cmd))
    if log is None:
        return subprocess.call(cmd, cwd=root)
    with open(log, "w") as f:
        return subprocess.call(cmd, cwd=root, stdout=f, stderr=subprocess.STDOUT)


# Chapters that train or probe the most first, so two side by side finish close together.
COST_ORDER = ("lp_norms", "ics_measure", "ics_noise", "smoothness", "surfaces", "training", "hessian", "theory",
              "later_work")
# Chapters that read the others' executed notebooks: executed after all of them.
LAST = ("later_work",)


def default_jobs() -> int:
    """Chapters executed side by side: one per core, at most four."""
    return max(1, min(4, (os.cpu_count() or 1)))


def book(*, profile: str = "quick", only: list[str] | None = None, force: bool = False,
         build_html: bool = True, jobs: int = 1) -> int:
    """Execute every chapter of the table of contents (or ``only`` those), ``jobs`` at a time,
    then build. Side by side, chapters share the training of the trajectories they have in
    common (the store hands each untrained one to whichever asks first) and each kernel gets
    ``cores // jobs`` threads."""
    chapters = toc_chapters()
    for name in only or []:
        if name not in chapters:
            raise ValueError(f"Chapter {name!r} is not in _toc.yml; chapters: {', '.join(chapters)}")
    if jobs < 1:
        raise ValueError(f"jobs must be a positive int; got {jobs}")
    todo = sorted(only or chapters, key=lambda n: COST_ORDER.index(n) if n in COST_ORDER else -1)
    if jobs > 1:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    failed: list[str] = []

    def run(name: str) -> None:
        try:
            execute(name, profile=profile, force=force, progress=jobs == 1)
        except Exception as e:  # noqa: BLE001 - keep going, report every failure at the end
            print(f"[bnlib] {name} FAILED: {type(e).__name__}: {str(e)[:2000]}", file=sys.stderr)
            failed.append(name)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(run, [n for n in todo if n not in LAST]))
    for name in (n for n in todo if n in LAST):
        run(name)
    print(f"[bnlib] {len(todo)} chapter(s) executed in {time.perf_counter() - t0:.0f} s ({jobs} at a time)")
    missing = [n for n in chapters if not (EXECUTED / f"{n}.ipynb").exists()]
    if missing:
        print(f"[bnlib] not yet executed, the book cannot be built: {', '.join(missing)}", file=sys.stderr)
        return 1
    summarise(progress=jobs == 1)
    code = build() if build_html else 0
    if failed:
        print(f"[bnlib] chapters that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else code
