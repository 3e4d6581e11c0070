#!/usr/bin/env python3
"""Turns bench/run.sh's samples into a table on the terminal and JSON."""

import json
import os
import platform
import statistics
import sys
import time
from collections import OrderedDict

samples_path, json_path, mode = sys.argv[1:4]
rows = OrderedDict()
with open(samples_path) as f:
    next(f)
    for line in f:
        group, op, side, value, note = line.rstrip("\n").split("\t")
        if value == "":
            continue
        rows.setdefault((group, op), OrderedDict()).setdefault((side, note), []).append(float(value))


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def ms(us):
    return "%.0f ms" % (us / 1000) if us >= 10000 else "%.1f ms" % (us / 1000)


results = []
markdown = ["| group | operation | thinsr / thin | LVM / linear / floor | ratio |", "|---|---|---|---|---|"]
print()
print("%-28s %-26s %22s %22s %8s" % ("group", "operation", "thinsr / thin", "LVM / linear / floor", "ratio"))
for (group, op), sides in rows.items():
    entry = {"group": group, "operation": op, "sides": {}}
    for (side, note), values in sides.items():
        entry["sides"].setdefault(side, {})[note or "wall_microseconds"] = summary(values)
    results.append(entry)
    left = next((s for s in ("thinsr", "thin") if s in entry["sides"]), None)
    right = next((s for s in ("lvm", "linear", "reference", "floor") if s in entry["sides"]), None)

    def cell(side):
        if side is None:
            return ""
        data = entry["sides"][side]
        if "wall_microseconds" in data:
            w = data["wall_microseconds"]
            text = "%s (%s-%s)" % (ms(w["median"]), ms(w["min"]).split()[0], ms(w["max"]))
            if "work" in data:
                text += " work %s" % ms(data["work"]["median"])
            return text
        if "bytes_per_second" in data:
            return "%.1f MB/s" % (data["bytes_per_second"]["median"] / 1e6)
        note, value = next(iter(data.items()))
        return "%d %s" % (value["median"], note)

    ratio = ""
    if left and right and right != "floor":
        a, b = entry["sides"][left], entry["sides"][right]
        key = next((k for k in ("wall_microseconds", "bytes_per_second", "ioctls", "execs", "count") if k in a and k in b), None)
        if key and a[key]["median"] and b[key]["median"]:
            value = b[key]["median"] / a[key]["median"] if key == "wall_microseconds" else a[key]["median"] / b[key]["median"]
            entry["ratio"] = {"kind": "LVM time / thinsr time" if key == "wall_microseconds" else "thinsr / other", "value": value}
            ratio = "%.2fx" % value
    print("%-28s %-26s %22s %22s %8s" % (group[:28], op[:26], cell(left), cell(right), ratio))
    markdown.append("| %s | %s | %s | %s | %s |" % (group, op, cell(left), cell(right), ratio))

labs = {"uml": "User-Mode Linux (one CPU, system calls through ptrace)",
        "qemu": "QEMU without KVM (virtme-ng)", "host": "this host's own kernel"}
lab = os.environ.get("THINSR_LAB_KIND", "host")
meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "kernel": platform.release(),
        "lab": lab, "lab_description": labs.get(lab, lab),
        "machine": platform.machine(), "cpus": os.cpu_count(), "mode": mode,
        "note": "absolute times in an emulated VM are not real-hardware figures; ratios taken side by side are"}
with open(json_path, "w") as f:
    json.dump({"meta": meta, "results": results}, f, indent=2)
with open(os.path.splitext(json_path)[0] + ".md", "w") as f:
    f.write("\n".join(markdown) + "\n")
print()
print("bench: %d figures (%s), %s, in the %s lab: %s, kernel %s; JSON in %s"
      % (len(results), mode, meta["date"], lab, meta["lab_description"], meta["kernel"], json_path))
