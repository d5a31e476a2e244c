"""Command line: ``python -m bnlib {book,run,params,store,plan}``.

  python -m bnlib book [--profile quick] [--only CH ...] [-j N]      execute chapters, build HTML
  python -m bnlib run CH [--profile P] [-p NAME VALUE ...] [-o OUT]  re-run one chapter
  ... book|run --ray [ADDRESS] [--ray-gpus F]                        trajectories as Ray tasks
  python -m bnlib plan [--profile paper] [--gpus N]                  what the book trains, GPU-hours
  python -m bnlib params CH [--cell]                                 a chapter's parameters (or its cell)
  python -m bnlib store [--prune]                                    list (or prune) the run store
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from . import book, chapters, config, runs, scaleout


def _value(text: str):
    """Like papermill's ``-p``: a Python literal if it parses (1, 0.5, [0.1, 0.5], True), else text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _params(chapter: str) -> str:
    mod = chapters.module(chapter)
    rows = [(name, [_show(mod.PROFILES.get(p, {}).get(name, f.default)) for p in config.PROFILES],
             f"{f.metadata['help']}; {f.metadata['constraint'].describe()}")
            for name, f in config.fields(mod.Params).items() if name != "profile"]
    w = max(len(v) for _, vals, _ in rows for v in vals) + 2
    head = f"{'name':<16}" + "".join(f"{p:>{w}}" for p in config.PROFILES) + "  meaning"
    return "\n".join([f"{chapter}: {mod.TITLE}", head] + [f"{name:<16}" + "".join(f"{v:>{w}}" for v in vals)
                                                          + f"  {meaning}" for name, vals, meaning in rows])


def _show(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bnlib", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("book", help="execute the chapters and build the HTML book")
    b.add_argument("--profile", default="quick", choices=config.PROFILES)
    b.add_argument("--only", nargs="+", metavar="CHAPTER", help="execute only these chapters")
    b.add_argument("--force", action="store_true", help="execute even if unchanged")
    b.add_argument("--no-build", action="store_true", help="execute only, do not build the HTML")
    b.add_argument("--jobs", "-j", type=int, default=book.default_jobs(),
                   help="chapters executed side by side (default: %(default)s, the cores here, at most 4)")
    r = sub.add_parser("run", help="execute one chapter with new parameters")
    r.add_argument("chapter")
    r.add_argument("--profile", default="quick", choices=config.PROFILES)
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    r.add_argument("-o", "--output", type=Path, help="executed notebook (default: _build/notebooks/CH.ipynb)")
    r.add_argument("--force", action="store_true")
    for cmd in (b, r):
        cmd.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                         help="train and probe each sweep's trajectories as Ray tasks: on a local cluster "
                              "(no address) or the cluster at ADDRESS ('auto', host:port)")
        cmd.add_argument("--ray-gpus", type=float, metavar="F",
                         help=f"fraction of a GPU per task (default {scaleout.DEFAULT_GPU_SHARE})")
    pl = sub.add_parser("plan", help="every trajectory the book trains, its FLOPs and the GPU-hours")
    pl.add_argument("--profile", default="paper", choices=config.PROFILES)
    pl.add_argument("--gpus", type=int, default=8, help="GPUs of the Ray estimate (default: %(default)s)")
    pl.add_argument("--only", nargs="+", metavar="CHAPTER", help="plan only these chapters")
    p = sub.add_parser("params", help="list a chapter's parameters per profile")
    p.add_argument("chapter")
    p.add_argument("--cell", action="store_true", help="print the notebook's parameters cell instead")
    s = sub.add_parser("store", help="list the run store (trajectories, checkpoints, probes, who used them)")
    s.add_argument("--root", help="run store folder (default: $BNLIB_RUNS, else ./_runs)")
    s.add_argument("--prune", action="store_true", help="remove entries no chapter of the current code can reach")
    args = ap.parse_args(argv)
    try:
        if getattr(args, "ray", None):
            _ray(args)
        if args.cmd == "plan":
            from . import plan

            print(plan.report(plan.plan(args.profile, only=args.only), gpus=args.gpus))
            return 0
        if args.cmd == "book":
            return book.book(profile=args.profile, only=args.only, force=args.force, jobs=args.jobs,
                             build_html=not args.no_build)
        if args.cmd == "store":
            if args.prune:
                gone = runs.prune(args.root)
                print(f"removed {len(gone)} entries")
            print(runs.format_listing(runs.listing(args.root)))
            return 0
        if args.cmd == "params":
            mod = chapters.module(args.chapter)
            print(config.params_cell(mod.Params) if args.cell else _params(args.chapter))
            return 0
        params = {k: _value(v) for k, v in args.parameter}
        out = args.output or book.ROOT / "_build" / "notebooks" / f"{args.chapter}.ipynb"
        book.execute(args.chapter, profile=args.profile, params=params, out=out, force=args.force)
        return 0
    except ValueError as e:  # bad chapter, profile or parameter: one clear line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


def _ray(args: argparse.Namespace) -> None:
    """Point this process and the kernels it starts at a Ray cluster (a local one by default)."""
    import os

    if args.ray_gpus is not None:
        os.environ[scaleout.GPUS_ENV] = str(args.ray_gpus)
        scaleout.gpu_share()  # a bad fraction fails here, before any kernel starts
    address = scaleout.start(None if args.ray == "local" else args.ray)
    print(f"[bnlib] Ray: sweeps run as tasks on the cluster at {address}")


if __name__ == "__main__":
    sys.exit(main())
