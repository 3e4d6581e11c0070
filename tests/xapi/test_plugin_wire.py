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

    def test_attach_of_a_writable_volume_offers_its_nbd_server(self):
        self.stub("thinvdi-attach", json.dumps({"sr": "6f1c", "key": "disk", "read_write": True, "virtual_size": 1048576}))
        uri = "nbd:unix:/run/thinsr/nbd/0a1b.c0ffee00.nbd:exportname=8e2f5c1a-0000-4000-8000-000000000001"
        self.stub("thinvdi-serve", json.dumps({"uri": uri, "socket": "/run/thinsr/nbd/0a1b.c0ffee00.nbd", "pid": 7,
                                               "holder": "MIR1"}))
        status, value = self.call(DATAPATH, "Datapath.attach", {"dbg": "x", "uri": "thinsr://6f1c/disk", "domain": "MIR1"})
        self.assertEqual(status, 0)
        implementations = dict(value["implementations"])
        self.assertEqual(implementations["Nbd"], {"uri": uri})
        # xapi splits the uri on ':' into exactly four fields.
        self.assertEqual(len(implementations["Nbd"]["uri"].split(":")), 4)
        self.assertEqual(self.args("thinvdi-serve"), ["--json", "--holder=MIR1", "--detach", "--", "6f1c", "disk"])

    def test_attach_of_a_snapshot_offers_no_nbd(self):
        self.stub("thinvdi-attach", json.dumps({"sr": "6f1c", "key": "snap", "read_write": False, "virtual_size": 512}))
        self.stub("thinvdi-serve", json.dumps({"uri": "nbd:unix:/x:exportname=y"}))
        status, value = self.call(DATAPATH, "Datapath.attach", {"dbg": "x", "uri": "thinsr://6f1c/snap", "domain": "3"})
        self.assertEqual(status, 0)
        self.assertNotIn("Nbd", dict(value["implementations"]))
        self.assertFalse(os.path.exists(os.path.join(self.tools, "thinvdi-serve.args")))

    def test_a_server_that_cannot_start_leaves_the_attach_without_nbd(self):
        self.stub("thinvdi-attach", json.dumps({"sr": "6f1c", "key": "disk", "read_write": True, "virtual_size": 512}))
        self.stub("thinvdi-serve", json.dumps({"code": "Not_available", "params": ["Not_available", "m"],
                                               "message": "serving NBD needs nbdkit or qemu-nbd"}), status=69)
        os.environ["THINSR_LOG_DIR"] = self.tools
        try:
            status, value = self.call(DATAPATH, "Datapath.attach", {"dbg": "x", "uri": "thinsr://6f1c/disk", "domain": "5"})
        finally:
            del os.environ["THINSR_LOG_DIR"]
        self.assertEqual(status, 0)
        self.assertEqual(sorted(dict(value["implementations"])), ["BlockDevice", "XenDisk"])
        with open(os.path.join(self.tools, "nbd.log")) as log:
            self.assertIn("needs nbdkit or qemu-nbd", log.read())

    def test_import_activate_returns_the_receivers_socket(self):
        self.stub("thinvdi-serve", json.dumps({"uri": "/run/thinsr/nbd/0a1b.c0ffee00.fd",
                                               "socket": "/run/thinsr/nbd/0a1b.c0ffee00.fd", "pid": 8, "holder": "7"}))
        status, value = self.call(DATAPATH, "Datapath.import_activate",
                                  {"dbg": "x", "uri": "thinsr://6f1c/disk", "domain": "7"})
        self.assertEqual((status, value), (0, "/run/thinsr/nbd/0a1b.c0ffee00.fd"))
        self.assertEqual(self.args("thinvdi-serve"),
                         ["--json", "--holder=7", "--receive", "--detach", "--", "6f1c", "disk"])

    def test_import_activate_of_an_inactive_volume_is_refused_in_xapis_shape(self):
        self.stub("thinvdi-serve", json.dumps({"code": "Volume_not_active", "params": ["Volume_not_active", "disk"],
                                               "message": "volume disk is not active for 7"}), status=3)
        status, value = self.call(DATAPATH, "Datapath.import_activate",
                                  {"dbg": "x", "uri": "thinsr://6f1c/disk", "domain": "7"})
        self.assertEqual((status, value["code"]), (1, "SR_BACKEND_FAILURE"))
        self.assertEqual(value["params"], ["Volume_not_active", "volume disk is not active for 7"])
        self.assertEqual(set(value["backtrace"]), {"error", "files", "lines"})

    def test_features_for_storage_motion(self):
        _, volume = self.call(VOLUME, "Plugin.Query", {"dbg": "x"})
        _, datapath = self.call(DATAPATH, "Plugin.Query", {"dbg": "x"})
        self.assertIn("VDI_COMPOSE", volume["features"])
        self.assertIn("VDI_MIRROR_IN", datapath["features"])

    def test_compose_passes_child_then_parent(self):
        self.stub("thinvdi-compose", json.dumps({"key": "leaf"}))
        status, value = self.call(VOLUME, "Volume.compose", {"dbg": "x", "sr": "s", "key": "leaf", "key2": "-parent"})
        self.assertEqual((status, value), (0, None))
        self.assertEqual(self.args("thinvdi-compose"), ["--json", "--", "s", "leaf", "-parent"])
        self.stub("thinvdi-compose", json.dumps({"code": "Volume_in_use", "params": ["Volume_in_use", "leaf"],
                                                 "message": "volume leaf is attached"}), status=3)
        status, value = self.call(VOLUME, "Volume.compose", {"dbg": "x", "sr": "s", "key": "leaf", "key2": "p"})
        self.assertEqual((status, value["params"]), (1, ["Volume_in_use", "volume leaf is attached"]))

    def test_a_uri_of_another_scheme_is_refused(self):
        status, value = self.call(DATAPATH, "Datapath.activate", {"dbg": "x", "uri": "file:///etc/passwd", "domain": "0"})
        self.assertEqual((status, value["params"][0]), (1, "Volume_does_not_exist"))


if __name__ == "__main__":
    unittest.main()
