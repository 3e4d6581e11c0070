"""Host unit tests of the plugins' wire format: how they read params, print
results and turn the tools' errors into SMAPIv3 errors. The tools are stood in
for by tiny scripts that print what the real tools print; the real tools and
kernel are exercised by conformance.py in the kernel lab."""

import json
import os
import stat
import subprocess
import tempfile
import unittest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "plugins")
VOLUME = os.path.join(ROOT, "volume", "org.xen.xapi.storage.thinsr")
DATAPATH = os.path.join(ROOT, "datapath", "thinsr")


class PluginWire(unittest.TestCase):
    def setUp(self):
        self.tools = tempfile.mkdtemp()

    def stub(self, name, stdout, status=0):
        path = os.path.join(self.tools, name)
        with open(path, "w") as script:
            script.write("#!/bin/sh\nfor a in \"$@\"; do printf '%%s\\0' \"$a\"; done > %s.args\n"
                         "cat <<'JSON'\n%s\nJSON\nexit %d\n" % (path, stdout, status))
        os.chmod(path, stat.S_IRWXU)

    def args(self, name):
        with open(os.path.join(self.tools, name + ".args")) as f:
            return f.read().split("\0")[:-1]

    def call(self, directory, method, params, argv=("--json",)):
        env = dict(os.environ, THINSR_TOOLS_DIR=self.tools)
        process = subprocess.run([os.path.join(directory, method)] + list(argv), input=json.dumps(params) + "\n",
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env)
        return process.returncode, json.loads(process.stdout)

    def test_every_method_is_an_executable_link(self):
        for directory in (VOLUME, DATAPATH):
            for entry in os.listdir(directory):
                if entry[0].isupper():
                    path = os.path.join(directory, entry)
                    self.assertTrue(os.path.islink(path) and os.access(path, os.X_OK), path)

    def test_query_is_bare_json(self):
        status, value = self.call(VOLUME, "Plugin.Query", {"dbg": "x"})
        self.assertEqual(status, 0)
        self.assertEqual(value["plugin"], "thinsr")
        self.assertEqual(value["required_api_version"], "5.0")

    def test_unknown_volume_becomes_volume_does_not_exist(self):
        self.stub("thinvdi-stat", json.dumps({"code": "Volume_does_not_exist", "params": ["Volume_does_not_exist", "k"],
                                              "message": "no volume"}), status=2)
        status, value = self.call(VOLUME, "Volume.stat", {"dbg": "x", "sr": "s", "key": "k"})
        self.assertEqual(status, 1)
        self.assertEqual(value["code"], "SR_BACKEND_FAILURE")
        self.assertEqual(value["params"], ["Volume_does_not_exist", "k"])
        self.assertEqual(set(value["backtrace"]), {"error", "files", "lines"})
        self.assertEqual(self.args("thinvdi-stat"), ["--json", "--", "s", "k"])

    def test_our_own_codes_keep_their_name_and_message(self):
        self.stub("thinvdi-destroy", json.dumps({"code": "Volume_in_use", "params": ["Volume_in_use", "k"],
                                                 "message": "volume k is attached"}), status=3)
        status, value = self.call(VOLUME, "Volume.destroy", {"dbg": "x", "sr": "s", "key": "k"})
        self.assertEqual((status, value["params"]), (1, ["Volume_in_use", "volume k is attached"]))

    def test_activated_on_another_host_carries_only_the_owner(self):
        self.stub("thinsr-attach", json.dumps({"code": "Activated_on_another_host",
                                               "params": ["Activated_on_another_host", "hostA"], "message": "m"}),
                  status=3)
        status, value = self.call(VOLUME, "SR.attach", {"dbg": "x", "configuration": {"sr_uuid": "u"}})
        self.assertEqual((status, value["params"]), (1, ["Activated_on_another_host", "hostA"]))

    def test_garbage_from_a_tool_is_a_backend_failure_not_a_crash(self):
        self.stub("thinsr-stat", "not json", status=1)
        status, value = self.call(VOLUME, "SR.stat", {"dbg": "x", "sr": "s"})
        self.assertEqual((status, value["code"], value["params"][0]), (1, "SR_BACKEND_FAILURE", "Backend_failure"))

    def test_volume_record_keeps_only_smapi_fields(self):
        record = {"key": "k", "uuid": "u", "name": "n", "description": "", "read_write": True, "sharable": False,
                  "virtual_size": 512, "physical_utilisation": 0, "uri": ["thinsr://s/k"], "keys": {},
                  "thin_id": 3, "device_path": "/dev/x"}
        self.stub("thinvdi-create", json.dumps(record))
        status, value = self.call(VOLUME, "Volume.create",
                                  {"dbg": "x", "sr": "s", "name": "n", "description": "", "size": 512, "sharable": False})
        self.assertEqual(status, 0)
        self.assertNotIn("thin_id", value)
        self.assertEqual(value["volume_type"], "Data")
        self.assertEqual(self.args("thinvdi-create"), ["--json", "--name=n", "--size=512", "--description", "", "--", "s"])

    def test_user_text_is_never_split_or_taken_for_an_option(self):
        record = {"key": "k", "uuid": "u", "name": "n", "description": "", "read_write": True, "sharable": False,
                  "virtual_size": 512, "physical_utilisation": 0, "uri": ["thinsr://s/k"], "keys": {}}
        self.stub("thinvdi-set", json.dumps(record))
        key, value = "--description=a=b", "-x 'q\"\nü"
        status, _ = self.call(VOLUME, "Volume.set", {"dbg": "x", "sr": "-s", "key": "k", "k": key, "v": value})
        self.assertEqual(status, 0)
        self.assertEqual(self.args("thinvdi-set"), ["--json", "--key=" + key, "--value=" + value, "--", "-s", "k"])
        self.stub("thinvdi-unset", json.dumps(record))
        self.call(VOLUME, "Volume.unset", {"dbg": "x", "sr": "s", "key": "k", "k": "--name"})
        self.assertEqual(self.args("thinvdi-unset"), ["--json", "--", "s", "k", "--name"])
        self.stub("thinvdi-set", json.dumps(record))
        self.call(VOLUME, "Volume.set_name", {"dbg": "x", "sr": "s", "key": "k", "new_name": "-n"})
        self.assertEqual(self.args("thinvdi-set"), ["--json", "--name=-n", "--", "s", "k"])

    def test_datapath_attach_names_the_device_and_static_vdis_mode(self):
        self.stub("thinvdi-attach", json.dumps({"sr": "6f1c", "key": "disk"}))
        status, value = self.call(DATAPATH, "Datapath.attach", None, argv=("static-vdis", "thinsr://6f1c/disk", "0"))
        # The domain is the device's holder, so several dom0 readers share it (see thinvdi-attach --holder).
        self.assertEqual(self.args("thinvdi-attach"), ["--json", "--inactive", "--holder=0", "--", "6f1c", "disk"])
        self.assertEqual(status, 0)
        implementations = dict(value["implementations"])
        self.assertEqual(implementations["XenDisk"]["backend_type"], "vbd")
        self.assertTrue(implementations["BlockDevice"]["path"].endswith("/6f1c/disk"))

    def test_a_uri_of_another_scheme_is_refused(self):
        status, value = self.call(DATAPATH, "Datapath.activate", {"dbg": "x", "uri": "file:///etc/passwd", "domain": "0"})
        self.assertEqual((status, value["params"][0]), (1, "Volume_does_not_exist"))


if __name__ == "__main__":
    unittest.main()
