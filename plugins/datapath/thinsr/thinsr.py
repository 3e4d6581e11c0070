#!/usr/bin/python3
"""thinsr's SMAPIv3 datapath plugin for `thinsr://<sr-uuid>/<key>` URIs: the
data path is the kernel's (a dm-thin device handed to blkback). Attach makes
the device node, so the path it returns exists at once (as tapdisk-based
plugins' do); activate loads the volume into it, read-write or read-only, and
a clone of a template copies what it reads into the pool from then until its
detach (thinvdi-hydrate --on-read). Every call names
its domain as the device's holder, so several dom0 readers (one datapath
each) share a snapshot's read-only device and the last to go removes it.

For storage motion (thinsr receiving a disk), attach of a writable volume
also offers an `Nbd` implementation: an NBD server (nbdkit, or qemu-nbd) of
the device attached for that domain, started by `thinvdi-serve --holder`
(a transient systemd unit, or a process in its own session); a second
attach for the domain gives the same socket, and the domain's detach (or
deactivate) stops the server, which flushes the device first.
import_activate returns a socket that takes NBD client connections passed
by SCM_RIGHTS (`thinvdi-serve --holder --receive`), until the same end."""

import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from thinsr_xapi import StorageError, parse_uri, serve, tool, tool_path  # noqa: E402

DEVICE_ROOT = os.environ.get("THINSR_DEV_DIR", "/dev/thinsr")
# VDI_MIRROR_IN: xapi calls import_activate (SMAPIv1 SRs migrating in) only when the datapath declares it.
FEATURES = ["VDI_MIRROR_IN"]


def query(_):
    return {
        "plugin": "thinsr", "name": "thinsr datapath",
        "description": "Kernel data path for thinsr volumes (dm-thin devices through blkback)",
        "vendor": "thinsr", "copyright": "thinsr contributors", "version": "1.0",
        "required_api_version": "5.0", "features": FEATURES, "configuration": {}, "required_cluster_stack": [],
    }


def holder(params):
    """The domain as a holder name: xapi's are "<domid>" or "u0_<dp>"; any
    other character becomes "_" so an odd domain still names one holder."""
    domain = str(params.get("domain") or "unknown")
    name = re.sub(r"[^A-Za-z0-9._:-]", "_", domain)[:128]
    return name if not name.startswith((".", "process.")) else "_" + name[1:]


def attach(params):
    sr, key = parse_uri(params["uri"])
    volume = tool("thinvdi-attach", sr, key, inactive=True, holder=holder(params))   # Volume_does_not_exist for a bad URI
    path = os.path.join(DEVICE_ROOT, volume["sr"], volume["key"])
    implementations = [
        ["XenDisk", {"params": path, "extra": {}, "backend_type": "vbd"}],
        ["BlockDevice", {"path": path}],
    ]
    if volume.get("read_write") and volume.get("virtual_size", 0) > 0:
        uri = nbd_server(sr, key, params)
        if uri:
            implementations.append(["Nbd", {"uri": uri}])
    return {"implementations": implementations}


def nbd_server(sr, key, params):
    """xapi's form of the address of the NBD server of the device attached
    for this domain (nbd:unix:<socket>:exportname=<volume uuid>, no other
    ':'), started now unless one runs for the domain already. The device is
    the VM's disk whatever this gives: a server that cannot start leaves the
    attach without Nbd (xapi then refuses to migrate into it), said in
    $THINSR_LOG_DIR/nbd.log."""
    try:
        return tool("thinvdi-serve", sr, key, holder=holder(params), detach=True)["uri"]
    except (StorageError, OSError, KeyError, TypeError) as error:
        if isinstance(error, StorageError):
            error = ": ".join([error.name] + error.arguments)
        try:
            directory = os.environ.get("THINSR_LOG_DIR", "/var/log/thinsr")
            os.makedirs(directory, exist_ok=True)
            with open(os.path.join(directory, "nbd.log"), "a") as log:
                log.write("%s %s/%s for %s: no NBD server: %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), sr, key,
                                                                     holder(params), error))
        except OSError:
            pass
        return None


def import_activate(params):
    """A unix socket that takes NBD client connections passed by SCM_RIGHTS
    (one message each: the datapath id as text, and the descriptor), each
    served read-write until its client disconnects; the volume must be
    active for the domain (Volume_not_active otherwise), and the receiver
    ends with the domain's deactivate or detach."""
    sr, key = parse_uri(params["uri"])
    return tool("thinvdi-serve", sr, key, holder=holder(params), receive=True, detach=True)["socket"]


def activate(params):
    sr, key = parse_uri(params["uri"])
    tool("thinvdi-attach", sr, key, holder=holder(params))
    try:
        volume = tool("thinvdi-stat", sr, key)
        # Copy-on-read needs dm-clone, which XCP-ng 8.3's 4.19 kernel lacks: no copier there.
        if volume.get("origin_template") and volume.get("read_write") and \
                tool("thinsr-host")["features"].get("copy_on_read"):
            start_copy_on_read(sr, key, volume["uuid"])
    except (StorageError, OSError, KeyError, AttributeError):
        pass   # the volume is active: copy-on-read is a cache, and its absence is no failure of this call


def start_copy_on_read(sr, key, uuid):
    """A clone that reads a template copies what its guest reads into the
    pool (thinvdi-hydrate --on-read) until its detach. Under systemd it is a
    transient unit of its own, so a toolstack restart does not stop it;
    where systemd-run cannot start one (systemd before 236 has no
    --collect, as in CentOS 7 based dom0s), and elsewhere, a process in its
    own session. One already running refuses a second. A copier that fails
    says why in $THINSR_LOG_DIR (/var/log/thinsr)/copy-on-read.log."""
    command = [tool_path("thinvdi-hydrate"), "--on-read", "--progress=none", "--", sr, key]
    # Never xapi's pipes: xapi reads them to their end. Error lines go to a log.
    log = subprocess.DEVNULL
    try:
        directory = os.environ.get("THINSR_LOG_DIR", "/var/log/thinsr")
        os.makedirs(directory, exist_ok=True)
        log = open(os.path.join(directory, "copy-on-read.log"), "a")
    except OSError:
        pass
    if os.path.isdir("/run/systemd/system") and shutil.which("systemd-run"):
        # A unit name of its own each time: a copier still ending after a
        # deactivate must not make this activate's start fail.
        unit = "thinsr-copy-on-read-%s-%d" % (uuid, time.time() * 1000)
        try:
            started = subprocess.run(["systemd-run", "--quiet", "--collect", "--unit=" + unit,
                                      "--description=thinsr copy-on-read of %s" % key] + command,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                     timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            started = False
        if started:
            return
    subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                     start_new_session=True, close_fds=True)


def activate_readonly(params):
    sr, key = parse_uri(params["uri"])
    tool("thinvdi-attach", sr, key, read_only=True, holder=holder(params))


def deactivate(params):
    sr, key = parse_uri(params["uri"])
    tool("thinvdi-detach", sr, key, holder=holder(params))


def detach(params):
    deactivate(params)   # idempotent: a second detach, or one after deactivate, changes nothing


def operation_id(params):
    """The id inside xapi's ["MirrorV1", id] (a bare id is taken too)."""
    operation = params.get("operation")
    if isinstance(operation, list) and len(operation) == 2 and operation[0] == "MirrorV1":
        operation = operation[1]
    if not isinstance(operation, str) or not operation:
        raise StorageError("Invalid_argument", "operation %r is not a thinsr mirror operation" % (operation,))
    return operation


def mirror(params):
    """Data.mirror: the volume that `domain` has active is mirrored by the
    kernel to `remote` (xapi's relay socket, which may appear a moment
    later); the mirror ends at Datapath.deactivate of that domain."""
    sr, key = parse_uri(params["uri"])
    started = tool("thinvdi-mirror", sr, key, params["remote"], domain=holder(params), background=True)
    return ["MirrorV1", started["operation"]]


def stat(params):
    now = tool("thinvdi-mirror-stat", operation_id(params))
    return {"failed": now["failed"], "complete": now["complete"], "progress": now["progress"]}


def cancel(params):
    tool("thinvdi-mirror-stop", operation_id(params))


def destroy(params):
    tool("thinvdi-mirror-stop", operation_id(params), forget=True)


def ls(_):
    return [["MirrorV1", each["operation"]] for each in tool("thinvdi-mirror-stat")]


METHODS = {"Plugin.Query": query, "Datapath.attach": attach, "Datapath.activate": activate,
           "Datapath.activate_readonly": activate_readonly, "Datapath.deactivate": deactivate,
           "Datapath.detach": detach, "Datapath.import_activate": import_activate, "Data.mirror": mirror,
           "Data.stat": stat, "Data.cancel": cancel, "Data.destroy": destroy, "Data.ls": ls}

if __name__ == "__main__":
    serve(METHODS)
