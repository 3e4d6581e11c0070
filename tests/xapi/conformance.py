#!/usr/bin/env python3
"""xapi conformance harness for thinsr's SMAPIv3 plugins.

Invokes the installed plugin executables exactly as xapi-storage-script does
(argv `--json`, one line of params on stdin, JSON on stdout; static-vdis'
argparse mode too), replays xapi's call sequences, and validates every answer
against the SMAPIv5 types. Usage: conformance.py ROOT DEVICE [DEVICE2]
where ROOT holds volume/ and datapath/ as installed."""

import concurrent.futures
import json
import os
import stat as stat_module
import subprocess
import time
import sys

ROOT, DEVICE = sys.argv[1], sys.argv[2]
VOLUME_DIR = os.path.join(ROOT, "volume", "org.xen.xapi.storage.thinsr")
DATAPATH_DIR = os.path.join(ROOT, "datapath", "thinsr")
PASSED = FAILED = 0


def check(what, condition, detail=""):
    global PASSED, FAILED
    if condition:
        PASSED += 1
        print("ok   xapi: %s" % what)
    else:
        FAILED += 1
        print("FAIL xapi: %s %s" % (what, detail))


def call(directory, method, params, argv=None):
    """Runs one method as xapi-storage-script does; returns (ok, value)."""
    script = os.path.join(directory, method)
    if not (os.path.isfile(script) and os.access(script, os.X_OK)):
        return False, {"code": "SCRIPT_MISSING", "params": [script]}
    process = subprocess.run([script] + (argv or ["--json"]), input=json.dumps(params) + "\n",
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    try:
        value = json.loads(process.stdout)
    except ValueError:
        return False, {"code": "SCRIPT_FAILED", "params": ["bad json on stdout", process.stdout, process.stderr]}
    if process.returncode != 0:
        check("%s failure has the error shape" % method, valid_error(value), json.dumps(value)[:300])
        return False, value
    return True, value


def volume(method, **params):
    return call(VOLUME_DIR, method, dict(params, dbg="conformance"))


def datapath(method, **params):
    return call(DATAPATH_DIR, method, dict(params, dbg="conformance"))


# ----------------------------------------------------------------- SMAPIv5 types
def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def string_map(v):
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())


def fields(value, required, optional=None):
    """The record has every required field with a valid value; optional fields
    are either omitted or valid (rpc-light omits None)."""
    if not isinstance(value, dict):
        return "not an object"
    for name, valid in required.items():
        if name not in value:
            return "missing %s" % name
        if not valid(value[name]):
            return "bad %s: %r" % (name, value[name])
    for name, valid in (optional or {}).items():
        if name in value and not valid(value[name]):
            return "bad optional %s: %r" % (name, value[name])
    return None


HEALTH = {"Healthy", "Recovering", "Unreachable", "Unavailable"}
SR_STAT = {"sr": lambda v: isinstance(v, str), "name": lambda v: isinstance(v, str),
           "description": lambda v: isinstance(v, str), "free_space": is_int, "total_space": is_int,
           "datasources": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
           "clustered": lambda v: isinstance(v, bool),
           "health": lambda v: isinstance(v, list) and len(v) == 2 and v[0] in HEALTH and isinstance(v[1], str)}
VOLUME = {"key": lambda v: isinstance(v, str) and v != "", "name": lambda v: isinstance(v, str),
          "description": lambda v: isinstance(v, str), "read_write": lambda v: isinstance(v, bool),
          "sharable": lambda v: isinstance(v, bool), "virtual_size": is_int, "physical_utilisation": is_int,
          "uri": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "keys": string_map}
VOLUME_OPTIONAL = {"uuid": lambda v: isinstance(v, str),
                   "volume_type": lambda v: v in ("Data", "CBT_Metadata", "Data_and_CBT_Metadata"),
                   "cbt_enabled": lambda v: isinstance(v, bool)}
QUERY = {"plugin": lambda v: isinstance(v, str), "name": lambda v: isinstance(v, str),
         "description": lambda v: isinstance(v, str), "vendor": lambda v: isinstance(v, str),
         "copyright": lambda v: isinstance(v, str), "version": lambda v: isinstance(v, str),
         "required_api_version": lambda v: v in ("3.0", "5.0"),
         "features": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
         "configuration": string_map,
         "required_cluster_stack": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)}


def valid_error(value):
    return (isinstance(value, dict) and isinstance(value.get("code"), str)
            and isinstance(value.get("params"), list) and all(isinstance(p, str) for p in value["params"])
            and isinstance(value.get("backtrace"), dict)
            and isinstance(value["backtrace"].get("error"), str)
            and isinstance(value["backtrace"].get("files"), list)
            and all(is_int(n) for n in value["backtrace"].get("lines", [None])))


def valid_backend(value):
    if not isinstance(value, dict) or not isinstance(value.get("implementations"), list):
        return False
    kinds = {}
    for entry in value["implementations"]:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            return False
        kinds[entry[0]] = entry[1]
    xen = kinds.get("XenDisk")
    return (xen is not None and isinstance(xen.get("params"), str) and string_map(xen.get("extra"))
            and isinstance(xen.get("backend_type"), str)
            and all(k in ("XenDisk", "BlockDevice", "File", "Nbd") for k in kinds))


def expect_record(what, ok, value, schema, optional=None):
    problem = "call failed: %s" % json.dumps(value)[:300] if not ok else fields(value, schema, optional)
    check(what, problem is None, problem or "")
    return value if ok else None


def expect_error(what, ok, value, name):
    check(what, not ok and value.get("code") == "SR_BACKEND_FAILURE" and value.get("params", [None])[0] == name,
          json.dumps(value)[:300])


# ----------------------------------------------------------------- sequences
ok, q = volume("Plugin.Query")
expect_record("Plugin.Query (volume)", ok, q, QUERY)
features = set(q.get("features", [])) if ok else set()
for feature in ["VDI_CREATE", "VDI_DELETE", "VDI_SNAPSHOT", "VDI_CLONE", "VDI_RESIZE", "VDI_REVERT",
                "VDI_ACTIVATE_READONLY", "THIN_PROVISIONING", "LARGE_VDI", "SR_PROBE", "VDI_RESIZE_ONLINE",
                "VDI_CONFIG_CBT"]:
    check("advertises %s" % feature, feature in features)
check("plugin name is the SR type", ok and q["plugin"] == "thinsr")
for feature, method in [("SR_PROBE", "SR.probe"), ("VDI_REVERT", "Volume.revert"), ("VDI_RESIZE", "Volume.resize"),
                        ("VDI_CONFIG_CBT", "Volume.enable_cbt"), ("VDI_CONFIG_CBT", "Volume.disable_cbt"),
                        ("VDI_CONFIG_CBT", "Volume.list_changed_blocks"), ("VDI_CONFIG_CBT", "Volume.data_destroy")]:
    check("%s is backed by an executable %s" % (feature, method), os.access(os.path.join(VOLUME_DIR, method), os.X_OK))
ok, dq = datapath("Plugin.Query")
expect_record("Plugin.Query (datapath)", ok, dq, QUERY)
check("datapath does not claim NONPERSISTENT (xapi uses clone-on-boot)", ok and "NONPERSISTENT" not in dq["features"])
# With tracing on, xapi-storage-script runs `python3 -m observer SCRIPT --json`, which
# runs the file through runpy.run_path: the entry files must work that way too.
observer = subprocess.run(
    [sys.executable, "-c", "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
     os.path.join(VOLUME_DIR, "Plugin.Query"), "--json"],
    input='{"dbg": "traced"}\n', stdout=subprocess.PIPE, universal_newlines=True)
check("runs under the observer's runpy.run_path", observer.returncode == 0
      and fields(json.loads(observer.stdout or "null"), QUERY) is None)
ok, diag = volume("Plugin.diagnostics")
check("Plugin.diagnostics returns a string", ok and isinstance(diag, str))

# sr-create: SR.create -> returned configuration -> SR.attach -> SR.stat
sr_uuid = "0c4e0e0c-51e5-4e0a-9b5c-c0f0f0000001"
ok, configuration = volume("SR.create", uuid=sr_uuid, configuration={"device": DEVICE}, name="xapi sr",
                           description="made by the conformance harness")
check("SR.create returns a configuration", ok and string_map(configuration), json.dumps(configuration)[:300])
ok, sr = volume("SR.attach", configuration=configuration)
check("SR.attach returns the sr string", ok and isinstance(sr, str), json.dumps(sr)[:300])
ok, stat = volume("SR.attach", configuration=configuration)
check("SR.attach again succeeds", ok and stat == sr)
ok, stat = volume("SR.stat", sr=sr)
expect_record("SR.stat", ok, stat, SR_STAT, {"uuid": lambda v: isinstance(v, str)})
check("SR.stat is Healthy", ok and stat["health"] == ["Healthy", ""])
check("SR.stat name", ok and stat["name"] == "xapi sr")
ok, probed = volume("SR.probe", configuration={"device": DEVICE})
check("SR.probe finds the SR on its device", ok and any(p.get("configuration", {}).get("sr_uuid") == sr_uuid
                                                         for p in probed), json.dumps(probed)[:300])
for p in probed if ok else []:
    check("probe_result shape", isinstance(p.get("complete"), bool) and string_map(p.get("configuration"))
          and string_map(p.get("extra_info")) and ("sr" not in p or fields(p["sr"], SR_STAT) is None))
ok, _ = volume("SR.set_name", sr=sr, new_name="renamed sr")
ok2, _ = volume("SR.set_description", sr=sr, new_description="new description")
ok3, stat = volume("SR.stat", sr=sr)
check("SR.set_name and set_description", ok and ok2 and ok3 and stat["name"] == "renamed sr"
      and stat["description"] == "new description")

# sr-scan: SR.stat Healthy -> SR.ls
ok, listing = volume("SR.ls", sr=sr)
check("SR.ls of an empty SR", ok and listing == [])

# vdi-create: Volume.create + Volume.set vdi-type
ok, v = volume("Volume.create", sr=sr, name="vm disk", description="a disk", size=64 << 20, sharable=False)
v = expect_record("Volume.create", ok, v, VOLUME, VOLUME_OPTIONAL)
key = v["key"] if v else "missing"
check("Volume.create size", v and v["virtual_size"] >= 64 << 20)
ok, _ = volume("Volume.set", sr=sr, key=key, k="vdi-type", v="user")
check("Volume.set vdi-type", ok)
ok, v = volume("Volume.stat", sr=sr, key=key)
expect_record("Volume.stat", ok, v, VOLUME, VOLUME_OPTIONAL)
check("vdi-type round-trips", ok and v["keys"].get("vdi-type") == "user")
check("the uri names the thinsr datapath", ok and v["uri"] and v["uri"][0].startswith("thinsr://"))
uri = v["uri"][0] if ok else "thinsr://none/none"

# Text from xapi reaches the catalog whole: keys and values with '=', a leading
# '-', spaces, quotes, newlines and non-ASCII, and names that look like options.
HOSTILE = ["a=b", "=lead", "-x", "--description", "--name=evil", "two words", "quote'\"s", "line\nbreak", "nön-äscii ✓",
           "tab\there", "trailing=", "-"]
for text in HOSTILE:
    ok, _ = volume("Volume.set", sr=sr, key=key, k=text, v=text + "=" + text)
    check("Volume.set key %r" % text, ok)
ok, v = volume("Volume.stat", sr=sr, key=key)
check("every hostile key and value round-trips exactly", ok and all(v["keys"].get(t) == t + "=" + t for t in HOSTILE)
      and v["description"] == "a disk" and v["name"] == "vm disk", json.dumps(v and v.get("keys"))[:400])
ok, _ = volume("Volume.set", sr=sr, key=key, k="empty", v="")
ok2, v = volume("Volume.stat", sr=sr, key=key)
check("an empty value round-trips", ok and ok2 and v["keys"].get("empty") == "")
for text in HOSTILE + ["empty"]:
    volume("Volume.unset", sr=sr, key=key, k=text)
ok, v = volume("Volume.stat", sr=sr, key=key)
check("Volume.unset removes each hostile key", ok and v["keys"] == {"vdi-type": "user"}, json.dumps(v and v.get("keys")))
ok, _ = volume("Volume.set_name", sr=sr, key=key, new_name="-n --json")
ok2, _ = volume("Volume.set_description", sr=sr, key=key, new_description="--name=x")
ok3, v = volume("Volume.stat", sr=sr, key=key)
check("option-like names and descriptions are taken as text", ok and ok2 and ok3 and v["name"] == "-n --json"
      and v["description"] == "--name=x")
volume("Volume.set_name", sr=sr, key=key, new_name="vm disk")
volume("Volume.set_description", sr=sr, key=key, new_description="a disk")

# The daemon self-test's 0-byte volume: create, set, stat, attach, activate, destroy.
ok, empty = volume("Volume.create", sr=sr, name="vdi name", description="vdi description", size=0, sharable=False)
check("Volume.create of 0 bytes (xapi's self-test)", ok and empty and empty["virtual_size"] == 0, json.dumps(empty)[:300])
if ok:
    ok, _ = volume("Volume.set", sr=sr, key=empty["key"], k="vdi-type", v="redolog")
    ok2, e = volume("Volume.stat", sr=sr, key=empty["key"])
    check("a 0-byte volume takes keys", ok and ok2 and e["keys"] == {"vdi-type": "redolog"})
    ok, b = datapath("Datapath.attach", uri=e["uri"][0], domain="6")
    ok2, _ = datapath("Datapath.activate", uri=e["uri"][0], domain="6")
    path = dict(b["implementations"])["BlockDevice"]["path"] if ok else ""
    check("a 0-byte volume attaches and activates (a device node without a table)", ok and ok2 and os.path.exists(path))
    datapath("Datapath.deactivate", uri=e["uri"][0], domain="6")
    datapath("Datapath.detach", uri=e["uri"][0], domain="6")
    ok, _ = volume("Volume.destroy", sr=sr, key=empty["key"])
    check("a 0-byte volume is destroyed", ok)

# Templates: introduced with thinvdi-introduce (SMAPIv3 has no call for it), seen
# in SR.ls as read-only volumes with their URI in keys, cloned with Volume.clone;
# every other call on one fails with VDI_IS_TEMPLATE.
image = os.path.join(os.environ.get("THINSR_SCRATCH", "/tmp"), "xapi-template.raw")
with open(image, "wb") as f:
    f.write(b"\x5a" * (4 << 20))
introduce = subprocess.run([os.path.join(os.environ.get("THINSR_TOOLS_DIR", ""), "thinvdi-introduce"), sr,
                            "file://" + image, "--name", "golden"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
check("thinvdi-introduce through the installed scheme script", introduce.returncode == 0, introduce.stderr)
ok, listing = volume("SR.ls", sr=sr)
golden = next((x for x in listing if x["key"] == "golden"), None) if ok else None
check("SR.ls shows the template: a valid, read-only record with its URI in keys",
      golden is not None and fields(golden, VOLUME, VOLUME_OPTIONAL) is None and not golden["read_write"]
      and golden["keys"].get("thinsr.template_uri") == "file://" + image, json.dumps(golden)[:300])
ok, tclone = volume("Volume.clone", sr=sr, key="golden")
check("Volume.clone of the template: a writable volume", ok and tclone["read_write"], json.dumps(tclone)[:300])
if ok:
    ok, b = datapath("Datapath.attach", uri=tclone["uri"][0], domain="7")
    ok2, _ = datapath("Datapath.activate", uri=tclone["uri"][0], domain="7")
    path = dict(b["implementations"])["BlockDevice"]["path"] if ok else ""

    def copying_on_read():
        return "_hc" in subprocess.run(["dmsetup", "ls"], stdout=subprocess.PIPE, universal_newlines=True).stdout

    def counting_reads():
        """Whether the copier's dm-stats regions are on dm-clone's source yet: reads before that are not copied."""
        names = subprocess.run(["dmsetup", "ls"], stdout=subprocess.PIPE, universal_newlines=True).stdout.split()
        return any(subprocess.run(["dmsetup", "message", name, "0", "@stats_list"], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, universal_newlines=True).stdout.count("+") == 2
                   for name in names if "_hs" in name)

    def clone_used():
        stat = subprocess.run([os.path.join(os.environ.get("THINSR_TOOLS_DIR", ""), "thinvdi-stat"), "--json", sr,
                               tclone["key"]], stdout=subprocess.PIPE, universal_newlines=True)
        return json.loads(stat.stdout).get("physical_utilisation", 0) if stat.returncode == 0 else -1

    for _ in range(100):
        if counting_reads():
            break
        time.sleep(0.1)
    check("Datapath.activate of a template's clone starts copy-on-read (dm-clone, dm-stats on its source)",
          copying_on_read() and counting_reads())
    try:
        with open(path, "rb") as disk:
            first = disk.read(4096)
    except OSError as error:
        first = str(error).encode()
    check("the clone attaches, activates and reads the template's bytes", ok and ok2 and first == b"\x5a" * 4096)
    for _ in range(50):
        if clone_used() > 0:
            break
        time.sleep(0.1)
    log = os.path.join(os.environ.get("THINSR_LOG_DIR", "/var/log/thinsr"), "copy-on-read.log")
    check("what it read is copied into the pool (thinvdi-stat: physical_utilisation > 0)", clone_used() > 0,
          (open(log).read() if os.path.exists(log) else "(no copy-on-read log)")
          + subprocess.run(["dmsetup", "status"], stdout=subprocess.PIPE, universal_newlines=True).stdout)
    datapath("Datapath.deactivate", uri=tclone["uri"][0], domain="7")
    datapath("Datapath.detach", uri=tclone["uri"][0], domain="7")
    for _ in range(50):
        if not copying_on_read():
            break
        time.sleep(0.1)
    check("Datapath.deactivate ends the copy-on-read (no dm-clone device left)", not copying_on_read())
    expect_error("Volume.destroy of the template -> VDI_IS_TEMPLATE", *volume("Volume.destroy", sr=sr, key="golden"),
                 name="VDI_IS_TEMPLATE")
    expect_error("Datapath.attach of the template -> VDI_IS_TEMPLATE",
                 *datapath("Datapath.attach", uri=golden["uri"][0], domain="7"), name="VDI_IS_TEMPLATE")
    expect_error("Volume.resize of the template -> VDI_IS_TEMPLATE",
                 *volume("Volume.resize", sr=sr, key="golden", new_size=8 << 20), name="VDI_IS_TEMPLATE")
    ok, _ = volume("Volume.destroy", sr=sr, key=tclone["key"])
    forget = subprocess.run([os.path.join(os.environ.get("THINSR_TOOLS_DIR", ""), "thinvdi-forget"), sr, "golden"],
                            stderr=subprocess.PIPE, universal_newlines=True)
    check("the clone is destroyed and the template forgotten", ok and forget.returncode == 0, forget.stderr)

# VM start/stop: Volume.stat -> Datapath.attach -> activate -> I/O -> deactivate -> detach
ok, backend = datapath("Datapath.attach", uri=uri, domain="3")
check("Datapath.attach returns a backend with XenDisk", ok and valid_backend(backend), json.dumps(backend)[:300])
xendisk = dict(backend["implementations"]).get("XenDisk", {}) if ok else {}
check("XenDisk is a kernel blkback vbd", xendisk.get("backend_type") == "vbd")
device = xendisk.get("params", "")
block = dict(backend["implementations"]).get("BlockDevice", {}).get("path", "") if ok else ""
check("the device Datapath.attach returns exists before activate", os.path.exists(block)
      and stat_module.S_ISBLK(os.stat(block).st_mode), block)
try:
    with open(block, "rb") as disk:
        attached_size = disk.seek(0, os.SEEK_END)
except OSError as error:
    attached_size = str(error)
check("and has the volume's size", attached_size == v["virtual_size"], str(attached_size))
ok, _ = datapath("Datapath.activate", uri=uri, domain="3")
check("Datapath.activate", ok)
ok, _ = datapath("Datapath.activate", uri=uri, domain="3")
check("Datapath.activate again (xapi re-activates) succeeds", ok)
payload = os.urandom(1 << 20)
try:
    with open(device, "r+b", buffering=0) as disk:
        disk.write(payload)
        os.fsync(disk.fileno())
    with open(device, "rb") as disk:
        check("real I/O on the returned device", disk.read(len(payload)) == payload)
except OSError as error:
    check("real I/O on the returned device", False, str(error))
for method in ["Datapath.deactivate", "Datapath.deactivate", "Datapath.detach", "Datapath.detach"]:
    ok, _ = datapath(method, uri=uri, domain="3")
    check("%s (idempotent)" % method, ok)
check("device gone after deactivate", not os.path.exists(device))

# vdi-snapshot: Volume.snapshot + Volume.set on the new key
ok, snap = volume("Volume.snapshot", sr=sr, key=key)
snap = expect_record("Volume.snapshot", ok, snap, VOLUME, VOLUME_OPTIONAL)
snap_key = snap["key"] if snap else "missing"
check("snapshot is read-only", snap and snap["read_write"] is False)
check("snapshot copies name, not keys", snap and snap["name"] == "vm disk" and snap["keys"] == {})
for k, val in [("snapshot_time", "20261122T00:00:00Z"), ("is_a_snapshot", "true"), ("snapshot_of", key),
               ("content_id", "c0ffee"), ("vdi-type", "user")]:
    ok, _ = volume("Volume.set", sr=sr, key=snap_key, k=k, v=val)
    check("Volume.set %s on the snapshot" % k, ok)
ok, s = volume("Volume.stat", sr=sr, key=snap_key)
check("snapshot keys round-trip", ok and s["keys"].get("snapshot_of") == key and s["keys"].get("is_a_snapshot") == "true")
snap_uri = s["uri"][0] if ok else uri
ok, _ = datapath("Datapath.attach", uri=snap_uri, domain="4")
ok2, _ = datapath("Datapath.activate_readonly", uri=snap_uri, domain="4")
check("a snapshot attaches and activates read-only", ok and ok2)
with open(dict(datapath("Datapath.attach", uri=snap_uri, domain="4")[1]["implementations"])["BlockDevice"]["path"], "rb") as disk:
    check("the snapshot holds what was written", disk.read(len(payload)) == payload)
# xapi's NBD server attaches in dom0 once per datapath ("u0_<dp>"): several readers share the device,
# and it stays until the last one lets go.
readers = ["u0_nbd_a", "u0_nbd_b"]
for reader in readers:
    ok, _ = datapath("Datapath.attach", uri=snap_uri, domain=reader)
    ok2, _ = datapath("Datapath.activate_readonly", uri=snap_uri, domain=reader)
    check("dom0 reader %s attaches the snapshot beside the others" % reader, ok and ok2)
snap_path = dict(datapath("Datapath.attach", uri=snap_uri, domain="4")[1]["implementations"])["BlockDevice"]["path"]
for reader in ["4", "u0_nbd_a"]:
    datapath("Datapath.deactivate", uri=snap_uri, domain=reader)
    datapath("Datapath.detach", uri=snap_uri, domain=reader)
    with open(snap_path, "rb") as disk:
        check("after %s lets go the other readers still read the snapshot" % reader, disk.read(len(payload)) == payload)
datapath("Datapath.deactivate", uri=snap_uri, domain="u0_nbd_b")
datapath("Datapath.detach", uri=snap_uri, domain="u0_nbd_b")
check("the last reader's detach removes the device", not os.path.exists(snap_path))

# vdi-clone, vdi-revert, vdi-resize
ok, clone = volume("Volume.clone", sr=sr, key=key)
clone = expect_record("Volume.clone", ok, clone, VOLUME, VOLUME_OPTIONAL)
check("clone is writable", clone and clone["read_write"] is True)
ok, _ = volume("Volume.revert", sr=sr, snapshot=snap_key, key=key)
check("Volume.revert", ok)
ok, v2 = volume("Volume.stat", sr=sr, key=key)
check("revert keeps the volume's key, uuid and keys", ok and v2["key"] == key and v2["uuid"] == v["uuid"]
      and v2["keys"].get("vdi-type") == "user")
ok, _ = volume("Volume.resize", sr=sr, key=key, new_size=128 << 20)
ok2, v3 = volume("Volume.stat", sr=sr, key=key)
check("Volume.resize then Volume.stat reports the size", ok and ok2 and v3["virtual_size"] >= 128 << 20)
ok, _ = volume("Volume.set_name", sr=sr, key=key, new_name="renamed disk")
ok2, _ = volume("Volume.set_description", sr=sr, key=key, new_description="renamed")
ok3, v4 = volume("Volume.stat", sr=sr, key=key)
check("Volume.set_name keeps the key", ok and ok2 and ok3 and v4["name"] == "renamed disk" and v4["key"] == key)
ok, _ = volume("Volume.unset", sr=sr, key=key, k="vdi-type")
ok2, v5 = volume("Volume.stat", sr=sr, key=key)
check("Volume.unset", ok and ok2 and "vdi-type" not in v5["keys"])

# a non-persistent disk through clone-on-boot: clone, mark, use the clone, destroy it, unmark
ok, temp = volume("Volume.clone", sr=sr, key=key)
ok2, _ = volume("Volume.set", sr=sr, key=key, k="clone-on-boot", v=temp["key"] if ok else "")
check("clone-on-boot: clone and mark", ok and ok2)
temp_uri = temp["uri"][0] if ok else uri
datapath("Datapath.attach", uri=temp_uri, domain="5")
ok, _ = datapath("Datapath.activate", uri=temp_uri, domain="5")
check("clone-on-boot: the temporary clone activates", ok)
datapath("Datapath.deactivate", uri=temp_uri, domain="5")
datapath("Datapath.detach", uri=temp_uri, domain="5")
ok, _ = volume("Volume.destroy", sr=sr, key=temp["key"] if temp else "")
ok2, _ = volume("Volume.unset", sr=sr, key=key, k="clone-on-boot")
check("clone-on-boot: destroy the clone and unmark", ok and ok2)

# changed-block tracking as Xen Orchestra's delta backup uses it: enable, snapshot, write, snapshot, list
import base64
ok, _ = volume("Volume.enable_cbt", sr=sr, key=key)
ok2, v6 = volume("Volume.stat", sr=sr, key=key)
check("Volume.enable_cbt sets cbt_enabled", ok and ok2 and v6.get("cbt_enabled") is True)
ok, base_snap = volume("Volume.snapshot", sr=sr, key=key)
check("a snapshot of a tracked volume is tracked", ok and base_snap.get("cbt_enabled") is True)
ok, attached = datapath("Datapath.attach", uri=uri, domain="0")
path = dict(attached["implementations"]).get("BlockDevice", {}).get("path") if ok else None
datapath("Datapath.activate", uri=uri, domain="0")
if path:
    with open(path, "r+b", buffering=0) as disk:
        disk.seek(1 << 20)
        disk.write(os.urandom(65536))
        os.fsync(disk.fileno())
datapath("Datapath.deactivate", uri=uri, domain="0")
datapath("Datapath.detach", uri=uri, domain="0")
ok, next_snap = volume("Volume.snapshot", sr=sr, key=key)
ok2, changed = volume("Volume.list_changed_blocks", sr=sr, key=base_snap["key"] if base_snap else "",
                      key2=next_snap["key"] if ok else "", offset=0, length=-1)
check("Volume.list_changed_blocks returns {granularity, bitmap}", ok2 and changed.get("granularity") == 65536
      and isinstance(changed.get("bitmap"), str), json.dumps(changed)[:300])
bitmap = base64.b64decode(changed["bitmap"]) if ok2 else b""
set_bits = [i * 8 + b for i, byte in enumerate(bitmap) for b in range(8) if byte & (0x80 >> b)]
check("...marking exactly the 64 KiB block written at 1 MiB (bit 16, first block = top bit)", set_bits == [16],
      str(set_bits[:20]))
check("...in whole 4-byte words, one bit per 64 KiB of the volume", len(bitmap) % 4 == 0
      and len(bitmap) * 8 >= v6["virtual_size"] // 65536 if ok2 else False)
# After the export, XO frees the base snapshot's data and lists against it next time.
ok, _ = volume("Volume.data_destroy", sr=sr, key=base_snap["key"] if base_snap else "")
ok2, _ = volume("Volume.set", sr=sr, key=base_snap["key"] if base_snap else "", k="vdi-type", v="cbt_metadata")
ok3, destroyed = volume("Volume.stat", sr=sr, key=base_snap["key"] if base_snap else "")
check("Volume.data_destroy keeps the snapshot as CBT_Metadata, still tracked, using no space", ok and ok2 and ok3
      and destroyed["volume_type"] == "CBT_Metadata" and destroyed["cbt_enabled"] is True
      and destroyed["physical_utilisation"] == 0, json.dumps(destroyed)[:300])
ok, again = volume("Volume.list_changed_blocks", sr=sr, key=base_snap["key"] if base_snap else "",
                   key2=next_snap["key"] if next_snap else "", offset=0, length=-1)
check("list_changed_blocks from the data-destroyed snapshot gives the same answer", ok and again == changed,
      json.dumps(again)[:200])
ok, unrelated = volume("Volume.list_changed_blocks", sr=sr, key=next_snap["key"] if next_snap else "",
                       key2=base_snap["key"] if base_snap else "", offset=0, length=-1)
check("list_changed_blocks from a later snapshot to an earlier one fails (xapi falls back to a full copy)", not ok)
ok, _ = volume("Volume.disable_cbt", sr=sr, key=key)
ok2, v7 = volume("Volume.stat", sr=sr, key=key)
check("Volume.disable_cbt", ok and ok2 and v7.get("cbt_enabled") is False)

# static-vdis' argparse mode
ok, value = call(VOLUME_DIR, "Plugin.Query", None, argv=["static-vdis"])
check("static-vdis: Plugin.Query", ok and fields(value, QUERY) is None)
ok, value = call(VOLUME_DIR, "SR.attach", None,
                 argv=["static-vdis"] + sum([["--configuration", k, val] for k, val in configuration.items()], []))
check("static-vdis: SR.attach", ok and value == sr)
ok, value = call(VOLUME_DIR, "Volume.stat", None, argv=["static-vdis", sr, key])
check("static-vdis: Volume.stat", ok and fields(value, VOLUME, VOLUME_OPTIONAL) is None)
for method in ["Datapath.attach", "Datapath.activate", "Datapath.deactivate", "Datapath.detach"]:
    ok, value = call(DATAPATH_DIR, method, None, argv=["static-vdis", uri, "0"])
    check("static-vdis: %s" % method, ok)

# error paths
expect_error("unknown key -> Volume_does_not_exist", *volume("Volume.stat", sr=sr, key="no-such-key"),
             name="Volume_does_not_exist")
expect_error("destroy of an unknown key", *volume("Volume.destroy", sr=sr, key="no-such-key"),
             name="Volume_does_not_exist")
expect_error("unknown SR -> SR_does_not_exist", *volume("SR.stat", sr="no-such-sr"), name="SR_does_not_exist")
expect_error("datapath on an unknown key", *datapath("Datapath.attach", uri="thinsr://%s/nope" % sr, domain="1"),
             name="Volume_does_not_exist")
datapath("Datapath.activate", uri=uri, domain="3")
ok, value = volume("Volume.destroy", sr=sr, key=key)
check("destroy of an active volume fails with Volume_in_use",
      not ok and value.get("params", [None])[0] == "Volume_in_use", json.dumps(value)[:300])
ok, value = volume("SR.detach", sr=sr)
check("SR.detach with an active volume fails with Volume_in_use",
      not ok and value.get("params", [None])[0] == "Volume_in_use", json.dumps(value)[:300])
ok, value = volume("SR.stat", sr=sr)
check("...and leaves the SR attached", ok)
datapath("Datapath.deactivate", uri=uri, domain="3")

# 8 concurrent calls on one SR (xapi runs them in parallel, with no timeout)
def parallel_call(index):
    if index % 2:
        return "create", volume("Volume.create", sr=sr, name="parallel %d" % index, description="",
                                size=8 << 20, sharable=False)
    return "snapshot", volume("Volume.snapshot", sr=sr, key=key)


with concurrent.futures.ThreadPoolExecutor(8) as pool:
    results = list(pool.map(parallel_call, range(8)))
check("8 concurrent calls all answer correctly",
      all(ok and fields(value, VOLUME, VOLUME_OPTIONAL) is None for _, (ok, value) in results),
      json.dumps([r[1] for r in results])[:500])
ok, listing = volume("SR.ls", sr=sr)
check("SR.ls lists every volume with valid records", ok and all(fields(x, VOLUME, VOLUME_OPTIONAL) is None for x in listing))
check("the 8 new volumes are there, with distinct keys", ok and len({x["key"] for x in listing}) == len(listing)
      and len(listing) >= 11)

# sr-detach, then the detached SR's errors, then sr-destroy (xapi attaches before destroying)
ok, _ = volume("SR.detach", sr=sr)
check("SR.detach", ok)
ok, _ = volume("SR.detach", sr=sr)
check("SR.detach of a detached SR is a no-op", ok)
expect_error("a detached SR -> Sr_not_attached", *volume("SR.ls", sr=sr), name="Sr_not_attached")
ok, _ = volume("SR.attach", configuration=configuration)
ok2, _ = volume("SR.destroy", sr=sr)
check("SR.attach then SR.destroy", ok and ok2)
ok, probed = volume("SR.probe", configuration={"device": DEVICE})
check("the destroyed SR is gone from probe", ok and not any(p["configuration"].get("sr_uuid") == sr_uuid for p in probed))

print()
print("xapi: %d passed, %d failed" % (PASSED, FAILED))
sys.exit(1 if FAILED else 0)
