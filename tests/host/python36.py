#!/usr/bin/env python3
"""The plugins and scheme scripts must run on XCP-ng 8.3's python 3.6.

Parses each python file under the given directories with the 3.6 grammar
(ast feature_version) and refuses the standard library's 3.7+ names and
keywords the plugins could plausibly reach for. Prints one line per finding
and exits 1 if there is any."""
import ast
import os
import sys

NEWER_KEYWORDS = {"capture_output": "3.7", "text": "3.7"}   # subprocess.run/Popen/check_output
NEWER_ATTRIBUTES = {
    ("asyncio", "run"): "3.7", ("contextlib", "nullcontext"): "3.7", ("datetime", "fromisoformat"): "3.7",
    ("time", "time_ns"): "3.7", ("time", "monotonic_ns"): "3.7", ("shlex", "join"): "3.8",
    ("functools", "cached_property"): "3.8", ("math", "prod"): "3.8", ("math", "isqrt"): "3.8",
    ("os", "waitstatus_to_exitcode"): "3.9", ("os", "pidfd_open"): "3.9",
}
NEWER_METHODS = {"removeprefix": "3.9", "removesuffix": "3.9", "is_relative_to": "3.9"}
NEWER_MODULES = {"dataclasses": "3.7", "contextvars": "3.7", "importlib.resources": "3.7", "graphlib": "3.9",
                 "zoneinfo": "3.9", "tomllib": "3.11"}


def python_files(root):
    for directory, _, names in os.walk(root):
        for name in sorted(names):
            path = os.path.join(directory, name)
            if os.path.islink(path) or name.endswith((".pyc", ".md")):
                continue
            with open(path, "rb") as handle:
                head = handle.read(64)
            if name.endswith(".py") or head.startswith(b"#!") and b"python" in head.split(b"\n")[0]:
                yield path


def findings(path):
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    try:
        tree = ast.parse(source, path, feature_version=(3, 6))
    except SyntaxError as error:
        yield "%s:%s: not python 3.6 syntax: %s" % (path, error.lineno, error.msg)
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "__future__" and \
                any(alias.name == "annotations" for alias in node.names):
            yield "%s:%d: from __future__ import annotations needs 3.7" % (path, node.lineno)
        modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        for module in modules:
            if module in NEWER_MODULES:
                yield "%s:%d: module %s needs %s" % (path, node.lineno, module, NEWER_MODULES[module])
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg in NEWER_KEYWORDS:
                    yield "%s:%d: keyword %s= needs %s" % (path, node.lineno, keyword.arg, NEWER_KEYWORDS[keyword.arg])
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and (node.value.id, node.attr) in NEWER_ATTRIBUTES:
                yield "%s:%d: %s.%s needs %s" % (path, node.lineno, node.value.id, node.attr,
                                                 NEWER_ATTRIBUTES[(node.value.id, node.attr)])
            elif node.attr in NEWER_METHODS:
                yield "%s:%d: .%s() needs %s" % (path, node.lineno, node.attr, NEWER_METHODS[node.attr])
        if isinstance(node, ast.Name) and node.id == "breakpoint":
            yield "%s:%d: breakpoint() needs 3.7" % (path, node.lineno)


def main(roots):
    checked, problems = 0, []
    for root in roots:
        for path in python_files(root):
            checked += 1
            problems.extend(findings(path))
    for problem in problems:
        print(problem)
    print("python 3.6: %d files checked, %d problems" % (checked, len(problems)))
    return 1 if problems or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["plugins"]))
