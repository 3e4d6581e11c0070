"""Shared code of thinsr's SMAPIv3 plugins: the wire format xapi-storage-script
uses (argv `--json`, the params object on stdin, the bare result on stdout; on
failure a non-zero exit with {"code", "params", "backtrace"}), and running the
thinsr tools, which do all the work.  Standard library only."""

import argparse
import json
import os
import subprocess
import sys
import traceback

TOOL_DIRECTORIES = ["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin", "/usr/local/bin"]
URI_SCHEME = "thinsr"

# SMAPIv3 error names the tools' codes map to; anything else is a backend failure.
SMAPI_ERRORS = {"Volume_does_not_exist", "SR_does_not_exist", "Sr_not_attached", "Activated_on_another_host",
                "Unimplemented", "Cancelled"}


class StorageError(Exception):
    """An error xapi understands: code SR_BACKEND_FAILURE with the SMAPIv3
    error name and its argument as params, as the Python bindings send them."""

    def __init__(self, name, *arguments):
        super().__init__(name)
        self.name = name
        self.arguments = [str(a) for a in arguments]

    def wire(self):
        if self.name == "Activated_on_another_host":
            return "Activated_on_another_host", ["Activated_on_another_host"] + self.arguments
        return "SR_BACKEND_FAILURE", [self.name] + self.arguments


def tool_path(name):
    directory = os.environ.get("THINSR_TOOLS_DIR")
    if directory:
        return os.path.join(directory, name)
    for entry in os.environ.get("PATH", "").split(":") + TOOL_DIRECTORIES:
        candidate = os.path.join(entry, name)
        if entry and os.access(candidate, os.X_OK):
            return candidate
    raise StorageError("Backend_failure", "%s not found; is thinsr installed?" % name)


def tool(program, *positionals, **options):
    """Runs a thinsr tool with --json and returns its parsed result. Text from
    xapi never reaches the tool's parser as an option: each option is one
    `--name=value` word (an empty value is `--name ""`; a list repeats it,
    True is a flag, None leaves it out), and the positional arguments follow `--`."""
    argv = [tool_path(program), "--json"]
    for option, value in options.items():
        flag = "--" + option.rstrip("_").replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not None and value is not False:
            for v in (value if isinstance(value, list) else [value]):
                # The argument parser reads `--opt=` as a missing value; an empty word after it is a value.
                argv += ["%s=%s" % (flag, v)] if str(v) else [flag, ""]
    argv += ["--"] + [str(a) for a in positionals]
    process = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True)
    if process.returncode == 0:
        return json.loads(process.stdout) if process.stdout.strip() else None
    try:
        error = json.loads(process.stdout)
        code, params = error["code"], error.get("params", [])
    except (ValueError, KeyError, TypeError):
        raise StorageError("Backend_failure", "%s exited %d: %s" % (program, process.returncode,
                                                                   process.stderr.strip()))
    detail = params[1:] if params[:1] == [code] else params
    if code in SMAPI_ERRORS:
        raise StorageError(code, *(detail or [error.get("message", "")]))
    raise StorageError(code, error.get("message", process.stderr.strip()))


def parse_uri(uri):
    """thinsr://<sr-uuid>/<key> -> (sr, key)."""
    prefix = URI_SCHEME + "://"
    if not uri.startswith(prefix) or "/" not in uri[len(prefix):]:
        raise StorageError("Volume_does_not_exist", uri)
    sr, key = uri[len(prefix):].split("/", 1)
    return sr, key


def _positional(method):
    """The argparse mode static-vdis uses (no --json): positional arguments."""
    parser = argparse.ArgumentParser(prog=method)
    parser.add_argument("dbg")
    if method == "SR.attach":
        parser.add_argument("--configuration", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    elif method == "Volume.stat":
        parser.add_argument("sr")
        parser.add_argument("key")
    elif method.startswith("Datapath."):
        parser.add_argument("uri")
        parser.add_argument("domain")
    arguments = vars(parser.parse_args(sys.argv[1:]))
    if "configuration" in arguments:
        arguments["configuration"] = dict(arguments["configuration"])
    return arguments


def serve(methods):
    """Dispatches on the name this file was run as (one link per method)."""
    method = os.path.basename(sys.argv[0])
    handler = next((f for name, f in methods.items() if name.lower() == method.lower()), None)
    try:
        if handler is None:
            raise StorageError("Unimplemented", method)
        if "--json" in sys.argv[1:]:
            line = sys.stdin.readline()
            params = json.loads(line) if line.strip() else {}
        else:
            params = _positional(method)
        result = handler(params)
        sys.stdout.write(json.dumps(result))
        sys.stdout.write("\n")
        sys.exit(0)
    except StorageError as error:
        code, params = error.wire()
        _fail(code, params, error)
    except Exception as error:  # a bug or an unexpected failure: still the documented shape
        _fail("SR_BACKEND_FAILURE", ["Backend_failure", str(error)], error)


def _fail(code, params, error):
    frames = traceback.extract_tb(error.__traceback__) if error.__traceback__ else []
    sys.stdout.write(json.dumps({
        "code": code,
        "params": params,
        "backtrace": {"error": "%s: %s" % (type(error).__name__, error),
                      "files": [f.filename for f in frames], "lines": [f.lineno for f in frames]},
    }))
    sys.stdout.write("\n")
    sys.exit(1)
