import FoundationEssentials
import Testing
@testable import ThinCore
#if canImport(Glibc)
import Glibc
#endif

@Suite("mirrors: remotes from untrusted URIs, regions, progress, records")
struct MirrorTests {
    @Test("xapi's relay URI and a TCP export become qemu's typed options")
    func remotes() throws {
        let relay = try NBDRemote(uri: "nbd+unix:///mirror-5b1e?socket=/var/run/nbdproxy/export/vm-1")
        #expect(relay.server == .unix(path: "/var/run/nbdproxy/export/vm-1") && relay.export == "mirror-5b1e")
        #expect(relay.imageOptions == "driver=raw,file.driver=nbd,file.server.type=unix,"
                + "file.server.path=/var/run/nbdproxy/export/vm-1,file.export=mirror-5b1e")
        #expect(relay.uri == "nbd+unix:///mirror-5b1e?socket=/var/run/nbdproxy/export/vm-1")
        let tcp = try NBDRemote(uri: "nbd://host2.example:10811/disk")
        #expect(tcp.server == .tcp(host: "host2.example", port: 10811) && tcp.export == "disk")
        #expect(try NBDRemote(uri: "nbd://host2").server == .tcp(host: "host2", port: 10809))
    }

    @Test("a URI that could smuggle options, paths or another protocol is refused", arguments: [
        "nbd+unix:///x?socket=/run/a,file.driver=file", "nbd+unix:///x?socket=relative.sock",
        "nbd+unix:///x", "nbd+unix:///x?socket=/run/../etc/sock", "nbd+unix:///a,b?socket=/run/s",
        "nbd://host:99999/x", "nbd://:10809/x", "nbd://ho st/x", "file:///etc/passwd", "nbds://host/x",
        "nbd+unix:///x?socket=/run/s&tls=on", "nbd+unix:///x%2c?socket=/run/s",
    ])
    func refusedRemotes(_ uri: String) {
        #expect(throws: ThinError.self) { try NBDRemote(uri: uri) }
    }

    @Test("regions: the pool's block, at least 64 KiB, a power of two, never past the volume")
    func regionSize() {
        #expect(SRMirrors.regionBytes(blockBytes: 65536, volumeBytes: 1 << 30) == 65536)
        #expect(SRMirrors.regionBytes(blockBytes: 1 << 20, volumeBytes: 1 << 30) == 1 << 20)
        #expect(SRMirrors.regionBytes(blockBytes: 192 * 1024, volumeBytes: 1 << 30) == 65536)
        #expect(SRMirrors.regionBytes(blockBytes: 512 * 1024, volumeBytes: 4096) == 4096)
    }

    @Test("progress counts only the regions that needed a copy, from 0 to 1")
    func progress() {
        #expect(MirrorRecords.fraction(inSync: 900, of: 1000, atStart: 900) == 0)
        #expect(MirrorRecords.fraction(inSync: 950, of: 1000, atStart: 900) == 0.5)
        #expect(MirrorRecords.fraction(inSync: 1000, of: 1000, atStart: 900) == 1)
        #expect(MirrorRecords.fraction(inSync: 10, of: 10, atStart: 10) == 1)
        #expect(MirrorRecords.fraction(inSync: 800, of: 1000, atStart: 900) == 0)
    }

    @Test("the progress reported is the highest seen: a drop in the kernel's count never shows")
    func progressNeverGoesBack() {
        var template = Array("/tmp/thinsr-mirror-XXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template))
        let file = "\(directory)/m.progress"
        defer { System.removeFile(file); rmdir(directory) }
        #expect(System.raiseRecordedMaximum(file, to: 0.25) == 0.25)
        #expect(System.raiseRecordedMaximum(file, to: 0.5) == 0.5)
        #expect(System.raiseRecordedMaximum(file, to: 0.125) == 0.5)
        #expect(System.raiseRecordedMaximum(file, to: 1) == 1)
        #expect(System.raiseRecordedMaximum("\(directory)/missing/m.progress", to: 0.75) == 0.75)
    }

    @Test("operation ids name the SR and the volume, and nothing else parses")
    func operations() throws {
        let sr = UUID(), volume = UUID()
        let names = SRNames(uuid: sr)
        let id = MirrorRecord.operation(sr: names, volume: volume)
        let parsed = try #require(MirrorRecord.parse(operation: id))
        #expect(parsed.sr == sr && parsed.volume == volume)
        #expect(MirrorRecord.parse(operation: "nonsense") == nil)
        #expect(MirrorRecord.parse(operation: "\(id)/x") == nil)
    }

    @Test("the mirror's source device is one of the SR's own, walked by reconciliation")
    func ownedName() throws {
        let names = SRNames(uuid: UUID())
        let volume = UUID()
        let device = names.mirrorSourceDevice(volume)
        #expect(names.owned(try #require(DmNameCheck.name(device.name))) == .mirrorSource(volume))
    }
}

import ThinDeviceMapper
enum DmNameCheck { static func name(_ text: String) -> DmName? { DmName(validating: text) } }
