#!/usr/bin/python3
"""thinsr's SMAPIv3 volume plugin (SR type `thinsr`). Every executable in this
directory is a link to this file named after the method it serves; each
method runs the thinsr tools."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from thinsr_xapi import StorageError, serve, tool  # noqa: E402

FEATURES = ["SR_ATTACH", "SR_CREATE", "SR_DELETE", "SR_DETACH", "SR_SCAN", "SR_PROBE", "SR_UPDATE", "SR_STATS",
            "VDI_CREATE", "VDI_DELETE", "VDI_SNAPSHOT", "VDI_CLONE", "VDI_RESIZE", "VDI_RESIZE_ONLINE",
            "VDI_REVERT", "VDI_UPDATE", "VDI_ACTIVATE_READONLY", "THIN_PROVISIONING", "LARGE_VDI",
            "VDI_CONFIG_CBT", "VDI_MIRROR", "VDI_COMPOSE"]


def query(_):
    return {
        "plugin": "thinsr", "name": "thinsr",
        "description": "Thin-provisioned local SR on Linux device-mapper thin pools",
        "vendor": "thinsr", "copyright": "thinsr contributors", "version": "1.0",
        "required_api_version": "5.0", "features": FEATURES,
        "configuration": {
            "device": "Comma-separated block devices for the SR to own (pvcreate + vgcreate)",
            "vg": "An existing LVM volume group to create the SR in (with pool-size)",
            "pool-size": "Pool data size with --vg, in bytes or with K, M, G or T",
            "sr_uuid": "Set by SR.create: the SR this configuration attaches",
        },
        "required_cluster_stack": [],
    }


def diagnostics(_):
    return "\n".join("%s %s attached=%s" % (sr["uuid"], sr["name"], sr["attached"]) for sr in tool("thinsr-ls"))


def devices_of(configuration):
    return [d for d in configuration.get("device", "").split(",") if d]


def sr_create(params):
    configuration = dict(params.get("configuration") or {})
    arguments = {"uuid": params["uuid"], "name": params.get("name", ""), "description": params.get("description", "")}
    devices = devices_of(configuration)
    if devices:
        arguments["device"] = devices
    elif configuration.get("vg"):
        arguments.update(vg=configuration["vg"], pool_size=configuration.get("pool-size", ""))
    else:
        raise StorageError("Backend_failure", "device-config needs device=DEV[,DEV...] or vg=VG with pool-size=SIZE")
    stat = tool("thinsr-create", **arguments)
    configuration["sr_uuid"] = stat["uuid"]
    return configuration


def sr_reference(configuration):
    if configuration.get("sr_uuid"):
        return configuration["sr_uuid"]
    found = [p for p in probe({"configuration": configuration}) if p.get("sr")]
    if len(found) != 1:
        raise StorageError("SR_does_not_exist", ",".join(devices_of(configuration)) or "no sr_uuid given")
    return found[0]["sr"]["uuid"]


def sr_attach(params):
    return tool("thinsr-attach", sr_reference(params.get("configuration") or {}))["uuid"]


def sr_detach(params):
    srs = {sr["uuid"]: sr for sr in tool("thinsr-ls")}
    if params["sr"] in srs and srs[params["sr"]]["attached"]:
        tool("thinsr-detach", params["sr"])
    return None


def sr_destroy(params):
    sr_detach(params)
    tool("thinsr-destroy", params["sr"], force=True)
    return None


def sr_stat(params):
    stat = tool("thinsr-stat", params["sr"])
    keys = ["sr", "name", "uuid", "description", "free_space", "total_space", "datasources", "clustered", "health"]
    return {key: stat[key] for key in keys}


def sr_ls(params):
    return [volume_record(v) for v in tool("thinvdi-ls", params["sr"])]


def probe(params):
    configuration = params.get("configuration") or {}
    wanted = {os.path.realpath(d) for d in devices_of(configuration)}
    results = []
    for sr in tool("thinsr-ls"):
        if wanted and not wanted.intersection(os.path.realpath(d) for d in sr.get("devices", [])):
            continue
        if configuration.get("vg") and sr["volume_group"] != configuration["vg"]:
            continue
        found = dict(configuration, sr_uuid=sr["uuid"])
        result = {"configuration": found, "complete": True, "extra_info": {"name": sr["name"]}}
        if sr["attached"]:
            result["sr"] = sr_stat({"sr": sr["uuid"]})
        results.append(result)
    return results


def sr_set_name(params):
    tool("thinsr-set", params["sr"], name=params["new_name"])


def sr_set_description(params):
    tool("thinsr-set", params["sr"], description=params["new_description"])


def volume_record(v):
    """The SMAPIv3 volume record (thinsr's extra fields left out)."""
    keys = ["key", "uuid", "name", "description", "read_write", "sharable", "virtual_size",
            "physical_utilisation", "uri", "keys"]
    record = {key: v[key] for key in keys}
    record["volume_type"] = "CBT_Metadata" if v.get("kind") == "cbt_metadata" else "Data"
    record["cbt_enabled"] = bool(v.get("cbt_enabled", False))
    if v.get("kind") == "template":
        # SMAPIv3 has no template call: SR.ls shows one read-only, its image in keys
        # (introduce and forget it with thinvdi-introduce and thinvdi-forget; VDI.clone works).
        record["keys"] = dict(record["keys"], **{"thinsr.template_uri": v.get("template_uri") or "",
                                                  "thinsr.template_format": v.get("template_format") or ""})
    return record


def volume_create(params):
    return volume_record(tool("thinvdi-create", params["sr"], name=params.get("name", ""), size=params["size"],
                              description=params.get("description", ""), sharable=bool(params.get("sharable"))))


def volume_copy(tool_name):
    def handler(params):
        return volume_record(tool(tool_name, params["sr"], params["key"]))
    return handler


def volume_destroy(params):
    tool("thinvdi-destroy", params["sr"], params["key"])


def volume_revert(params):
    tool("thinvdi-revert", params["sr"], params["key"], params["snapshot"])


def volume_resize(params):
    tool("thinvdi-resize", params["sr"], params["key"], str(params["new_size"]))


def volume_compose(params):
    """key (the child) becomes key2 (the parent)'s contents with the child's
    own writes on top; the parent may be destroyed afterwards."""
    tool("thinvdi-compose", params["sr"], params["key"], params["key2"])


def volume_stat(params):
    return volume_record(tool("thinvdi-stat", params["sr"], params["key"]))


def volume_set(params):
    tool("thinvdi-set", params["sr"], params["key"], key=[params["k"]], value=[params["v"]])


def volume_unset(params):
    tool("thinvdi-unset", params["sr"], params["key"], params["k"])


def volume_set_name(params):
    tool("thinvdi-set", params["sr"], params["key"], name=params["new_name"])


def volume_set_description(params):
    tool("thinvdi-set", params["sr"], params["key"], description=params["new_description"])


def volume_set_cbt(enabled):
    def handler(params):
        tool("thinvdi-set", params["sr"], params["key"], cbt="on" if enabled else "off")
    return handler


def volume_data_destroy(params):
    """Frees the snapshot's data; it stays as the base of list_changed_blocks."""
    tool("thinvdi-data-destroy", params["sr"], params["key"])


def volume_list_changed_blocks(params):
    """Blocks of key2 changed since snapshot key, from the pool's metadata:
    {"granularity": 65536, "bitmap": base64}; a negative length means to the end."""
    return tool("thinvdi-changed", params["sr"], params["key"], params["key2"], bitmap=True,
                offset=int(params.get("offset", 0)), length=int(params.get("length", -1)))


METHODS = {
    "Plugin.Query": query, "Plugin.diagnostics": diagnostics,
    "SR.create": sr_create, "SR.attach": sr_attach, "SR.detach": sr_detach, "SR.destroy": sr_destroy,
    "SR.stat": sr_stat, "SR.ls": sr_ls, "SR.probe": probe, "SR.set_name": sr_set_name,
    "SR.set_description": sr_set_description,
    "Volume.create": volume_create, "Volume.destroy": volume_destroy,
    "Volume.snapshot": volume_copy("thinvdi-snapshot"), "Volume.clone": volume_copy("thinvdi-clone"),
    "Volume.revert": volume_revert, "Volume.compose": volume_compose, "Volume.resize": volume_resize, "Volume.stat": volume_stat,
    "Volume.set": volume_set, "Volume.unset": volume_unset, "Volume.set_name": volume_set_name,
    "Volume.set_description": volume_set_description,
    "Volume.enable_cbt": volume_set_cbt(True), "Volume.disable_cbt": volume_set_cbt(False),
    "Volume.list_changed_blocks": volume_list_changed_blocks, "Volume.data_destroy": volume_data_destroy,
}

if __name__ == "__main__":
    serve(METHODS)
