#!/usr/bin/env python
"""Record what the lessons print, and compare two records: does another release of torch (or
of any dependency) change the numbers the lessons' text quotes?

    python tools/printed_numbers.py --out runs/printed-old.json    # all six, full (8-23 min)
    python tools/printed_numbers.py --profile fast --out /tmp/gae.json notebooks/03_gae.ipynb
    python tools/printed_numbers.py --compare runs/printed-old.json runs/printed-new.json

With ``--out`` it executes solution notebooks in a Jupyter kernel of the Python that runs it
(nbclient, as JupyterLab would), with ``PPO_EDU_PROFILE`` set and ``PPO_EDU_SEED`` unset, and
writes every line each cell printed (stdout, and the value a cell ends on), tagged with the
cell's index, and the library versions. Record once in the old venv and once in the new,
then ``--compare``: it lists the lines that differ. Lines that differ only in a wall-clock time
or a speed ("in 26.7 s", "19 responses/s") are counted apart, since those differ on every run.
It exits with 1 when any other line differs, or a notebook is in one record only.
A cell that fails (an assert, a time-out) does not lose the record: the notebook's lines up to
it are kept, the error becomes its last line, the next notebook runs, and ``--out`` exits with 1.
The record is written after each notebook, so a run stopped part-way keeps what it finished.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from _tool_checks import library_versions  # noqa: E402

# a number followed by a unit of time or of speed: "26.7 s", "1,024 ms", "3 min", "19 responses/s"
TIME = re.compile(r"\d[\d,]*(?:\.\d+)?\s*(?:ms|s|min|[A-Za-z]+/s)\b")


def printed_lines(nb) -> list[str]:
    """Each line a code cell printed to stdout, then its result's text, as ``[cell i] line``."""
    lines = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        # one cell's stdout can come in several outputs, split mid-line: join them first
        stdout = "".join(out.get("text", "") for out in cell.get("outputs", [])
                         if out.get("output_type") == "stream" and out.get("name") == "stdout")
        lines += [f"[cell {index}] {line}" for line in stdout.splitlines()]
        for out in cell.get("outputs", []):
            if out.get("output_type") == "execute_result" and "text/plain" in out.get("data", {}):
                lines += [f"[cell {index} result] {line}" for line in out["data"]["text/plain"].splitlines()]
            elif out.get("output_type") == "error":
                lines.append(f"[cell {index} error] {out.get('ename')}: {out.get('evalue')}")
    return lines


def record(paths: list[Path], profile: str, timeout: int, out: Path | None = None) -> dict:
    """Execute each notebook and return ``{"versions": ..., "profile": ..., "notebooks": {path: lines},
    "failed": {path: error line}}``; with ``out``, the record so far is written there after each
    notebook, so a run stopped part-way keeps the notebooks it finished."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    saved = {name: os.environ.get(name) for name in ("PPO_EDU_PROFILE", "PPO_EDU_SEED")}
    os.environ["PPO_EDU_PROFILE"] = profile  # the kernel inherits the environment
    os.environ.pop("PPO_EDU_SEED", None)
    notebooks, failed = {}, {}
    data = {"versions": {"python": sys.version.split()[0], **library_versions()},
            "profile": profile, "notebooks": notebooks, "failed": failed}
    try:
        for path in paths:
            nb = nbformat.read(path, as_version=4)
            start = time.perf_counter()
            # kernel "python3" runs this interpreter (jupyter_client puts sys.executable in its command)
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": str(path.resolve().parent)}})
            try:
                client.execute()
            except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
                # the cells before the failure keep their outputs; the failure is the last line
                lines = printed_lines(nb)
                if not isinstance(exc, CellExecutionError):
                    # a time-out or a dead kernel: at most the KeyboardInterrupt of nbclient's interrupt
                    # is in the outputs; the cell that was running is the last the kernel numbered
                    lines = [line for line in lines if not line.endswith(" error] KeyboardInterrupt: ")]
                    ran = [i for i, cell in enumerate(nb.cells) if cell.get("execution_count")]
                    where = ran[-1] if ran else "?"
                    lines.append(f"[cell {where} error] {type(exc).__name__}: {str(exc).strip().splitlines()[0]}")
                failed[path.name] = lines[-1]
                notebooks[path.name] = lines
            else:
                notebooks[path.name] = printed_lines(nb)
            status = f"FAILED, {failed[path.name]}" if path.name in failed else "ran"
            print(f"{path}: {status} ({len(notebooks[path.name])} lines in {time.perf_counter() - start:.0f} s)",
                  flush=True)
            if out is not None:
                out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return data


def compare(old: dict, new: dict) -> tuple[list[str], int, bool]:
    """(report lines, lines that differ only in times, whether anything else differs)."""
    report = [f"old: {old['profile']} profile, {old['versions']}",
              f"new: {new['profile']} profile, {new['versions']}"]
    for which, data in (("old", old), ("new", new)):  # records older than "failed" have none
        report += [f"{name} failed in the {which} record: {error}"
                   for name, error in data.get("failed", {}).items()]
    if old["profile"] != new["profile"]:
        report.append("the two records ran different profiles: their numbers are not comparable")
        return report, 0, True
    timing_total, differs = 0, False
    for name in sorted(set(old["notebooks"]) | set(new["notebooks"])):
        if name not in old["notebooks"] or name not in new["notebooks"]:
            report.append(f"{name}: only in the {'new' if name in new['notebooks'] else 'old'} record")
            differs = True
            continue
        a, b = old["notebooks"][name], new["notebooks"][name]
        other, timing = [], 0
        matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            removed, added = a[i1:i2], b[j1:j2]
            if (tag == "replace" and len(removed) == len(added)
                    and all(TIME.sub("<t>", x) == TIME.sub("<t>", y) for x, y in zip(removed, added))):
                timing += len(removed)
                continue
            other += [f"  - {line}" for line in removed] + [f"  + {line}" for line in added]
        times = f", {timing} differ only in a time or a speed" if timing else ""
        report.append(f"{name}: {len(a)} lines{times}" + ("; these differ (- old, + new):" if other
                                                          else f", {'the rest' if timing else 'all'} the same"))
        report += other
        differs |= bool(other)
        timing_total += timing
    return report, timing_total, differs


def load_record(path: Path, parser: argparse.ArgumentParser) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        parser.error(f"{path}: cannot read a record ({exc})")
    if (not isinstance(data, dict) or not {"versions", "profile", "notebooks"} <= set(data)
            or not isinstance(data["notebooks"], dict)
            or not all(isinstance(lines, list) and all(isinstance(line, str) for line in lines)
                       for lines in data["notebooks"].values())
            or not isinstance(data.get("failed", {}), dict)):
        parser.error(f"{path}: not a record of this script (versions, profile, and notebooks: "
                     "a list of printed lines for each notebook)")
    return data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=Path, help="record: execute the notebooks and write what they print here (JSON)")
    mode.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"),
                      help="compare two records: list the printed lines they disagree on")
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="with --out, the solution notebooks to run (default: all six in notebooks/)")
    parser.add_argument("--profile", choices=("full", "fast"),
                        help="with --out, the lessons' profile; default full, the one the text's numbers come from")
    parser.add_argument("--timeout", type=int, help="with --out, seconds per cell; default 1800")
    args = parser.parse_args(argv)

    if args.compare:
        if args.notebooks or args.profile or args.timeout is not None:
            parser.error("--compare takes two records, and no notebooks, --profile or --timeout")
        report, _, differs = compare(*(load_record(path, parser) for path in args.compare))
        print("\n".join(report))
        return 1 if differs else 0
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("0*.ipynb"))
    for path in paths:
        if path.suffix != ".ipynb" or not path.is_file():
            parser.error(f"{path} is not a notebook file")
    args.profile = args.profile or "full"
    args.timeout = 1800 if args.timeout is None else args.timeout
    if args.timeout < 1:
        parser.error(f"--timeout must be at least 1 second, got {args.timeout}")
    if args.out.is_dir():
        parser.error(f"--out {args.out} is a folder; pass a file name")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = record(paths, args.profile, args.timeout, out=args.out)  # written after each notebook
    print(f"wrote {args.out}")
    for name, error in data["failed"].items():
        print(f"{name} failed: {error}")
    return 1 if data["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
