"""Generate, check and lint Loopline's protobuf contracts.

    python scripts/protos.py gen     regenerate the committed Python next to each .proto
    python scripts/protos.py check   exit 1 if the committed Python differs from a fresh generation
    python scripts/protos.py lint    buf lint (the buf CLI from PyPI's buf-bin)

Generated files (`*_pb2.py`, `*_pb2.pyi`, `*_pb2_grpc.py`) are committed so that services and images
need no protoc; `check` is run by `make proto-check` and by tests/contracts.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.glob("loopline/**/*.proto"))


def generate(out: Path) -> None:
    """Run grpcio-tools' protoc over every .proto into `out`, adding package __init__ files."""
    from grpc_tools import protoc  # dev dependency; imported here so `--help` works without it

    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for proto in files:
        package = (out / proto).parent
        while package != out:
            (package / "__init__.py").touch()
            package = package.parent


def generated_files(root: Path) -> set[Path]:
    return {
        p.relative_to(root)
        for p in root.glob("loopline/**/*")
        if p.name.endswith(GENERATED_SUFFIXES) or p.name == "__init__.py"
    }


def cmd_gen() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        for stale in generated_files(PROTO_ROOT) - generated_files(fresh):
            (PROTO_ROOT / stale).unlink()
        for rel in generated_files(fresh):
            (PROTO_ROOT / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fresh / rel, PROTO_ROOT / rel)
    print(f"generated Python for {len(proto_files())} proto files")
    return 0


def stale_files() -> list[str]:
    """Paths (relative to protos/) whose committed generated Python is missing, extra or different."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        want, have = generated_files(fresh), generated_files(PROTO_ROOT)
        problems = [f"missing: {p}" for p in sorted(want - have)]
        problems += [f"not generated from any .proto: {p}" for p in sorted(have - want)]
        problems += [
            f"stale: {p}"
            for p in sorted(want & have)
            if not filecmp.cmp(fresh / p, PROTO_ROOT / p, shallow=False)
        ]
        return problems


def cmd_check() -> int:
    problems = stale_files()
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print("generated protobuf code is stale: run `make proto`", file=sys.stderr)
        return 1
    print("generated protobuf code is fresh")
    return 0


def cmd_lint() -> int:
    buf = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
    return subprocess.call([buf, "lint"], cwd=PROTO_ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("command", choices=["gen", "check", "lint"])
    command = parser.parse_args().command
    return {"gen": cmd_gen, "check": cmd_check, "lint": cmd_lint}[command]()


if __name__ == "__main__":
    sys.exit(main())
