import FoundationEssentials
import Testing
import ThinDeviceMapper
@testable import ThinCore
#if canImport(Glibc)
import Glibc
#endif

/// Templates against the doubles: a real scheme script and qemu-img read a
/// real image file; what reaches the pool, the catalog and the thin tables.
@Suite("templates", .serialized)
struct TemplateTests {
    /// A 4 MiB raw image and the repository's scheme scripts.
    static let image: String = {
        setenv("THINSR_SCHEME_DIR", "\(#filePath.split(separator: "/").dropLast(3).map { "/" + $0 }.joined())/plugins/schemes", 1)
        let path = "\(TestSR.root)/image.raw"
        let file = fopen(path, "w")
        let bytes = [UInt8](repeating: 0x5a, count: 4 << 20)
        fwrite(bytes, 1, bytes.count, file)
        fclose(file)
        return path
    }()

    func introduce(_ attached: AttachedSR) async throws -> VolumeRecord {
        try await attached.templates.introduceTemplate(uri: "file://\(Self.image)", name: nil, description: "", format: nil)
    }

    @Test("introduce records a read-only template with a real, empty thin device; only some operations apply")
    func introduceAndRefuse() async throws {
        let sr = try TestSR()
        let attached = try sr.open()
        defer { attached.close() }
        let template = try await introduce(attached)
        #expect(template.kind == .template && !template.readWrite && template.key == "image.raw")
        #expect(template.templateFormat == "raw" && template.virtualSize == 4 << 20)
        #expect(try attached.catalog.referencedThinIDs().contains(template.thinID))
        #expect(sr.deviceMapper.calls.contains { $0.contains("create_thin \(template.thinID)") })
        for attempt in [{ _ = try attached.requireVolume(template.key) },
                        { try attached.volumes.destroyVolume(template.key) },
                        { try attached.volumes.resizeVolume(template.key, to: 8 << 20) }] as [() throws -> Void] {
            let error = #expect(throws: ThinError.self) { try attempt() }
            #expect(error?.code == .volumeIsTemplate && error?.code.exitStatus == 7)
        }
        await #expect(throws: ThinError.self) { _ = try await attached.attachments.attachVolume(template.key, readOnly: true) }
        #expect(try attached.requireVolume(template.key, allowingTemplate: true).uuid == template.uuid)
    }

    @Test("clones and their snapshots read the template's origin device; forget waits for them")
    func clonesAndForget() async throws {
        let sr = try TestSR()
        let attached = try sr.open()
        defer { attached.close() }
        let template = try await introduce(attached)
        let clone = try attached.volumes.copyVolume(template.key, kind: .clone, name: "vm1")
        #expect(clone.originTemplate == template.uuid && clone.readWrite)
        #expect(sr.deviceMapper.calls.contains { $0.contains("create_snap \(clone.thinID) \(template.thinID)") })
        let snapshot = try attached.volumes.copyVolume(clone.key, kind: .snapshot, name: "vm1-s")
        #expect(snapshot.originTemplate == template.uuid)
        let table = attached.devices.table(for: snapshot)
        let thin = try #require(ThinTable(parameters: table.parameters))
        #expect(thin.externalOrigin == sr.names.originDevice(template.uuid).path && thin.deviceID == snapshot.thinID)
        #expect(attached.devices.thinTable(for: clone, withOrigin: false).parameters.split(separator: " ").count == 2)
        let refused = #expect(throws: ThinError.self) { try attached.templates.forgetTemplate(template.key) }
        #expect(refused?.code == .volumeInUse && refused?.parameters == [template.key, clone.key, snapshot.key])
        try attached.volumes.destroyVolume(snapshot.key)
        try attached.volumes.destroyVolume(clone.key)
        try attached.templates.forgetTemplate(template.key)
        #expect(try attached.catalog.volume(matching: template.key) == nil)
        #expect(sr.deviceMapper.calls.contains { $0.contains("delete \(template.thinID)") })
        let notTemplate = try attached.volumes.createVolume(name: "plain", description: "", sizeBytes: 1 << 20, sharable: false)
        #expect(throws: ThinError.self) { try attached.templates.forgetTemplate(notTemplate.key) }
    }

    @Test("bad URIs are refused before anything is made")
    func badURIs() async throws {
        let sr = try TestSR()
        let attached = try sr.open()
        defer { attached.close() }
        for uri in ["no-scheme", "http://example/x.qcow2", "file:///no/such/image.qcow2"] {
            await #expect(throws: ThinError.self) {
                _ = try await attached.templates.introduceTemplate(uri: uri, name: nil, description: "", format: nil)
            }
        }
        #expect(try attached.catalog.volumes(includingUnfinished: true).isEmpty)
        #expect(!sr.deviceMapper.calls.contains { $0.contains("create_thin") })
    }

    @Test("a URI the scheme script refuses (its exit 64) is the caller's error; one it cannot reach is not")
    func schemeScriptStatuses() async throws {
        _ = Self.image   // sets THINSR_SCHEME_DIR
        let refused = await #expect(throws: ThinError.self) { _ = try await SchemeScripts.attach("file://imagehost/x.raw") }
        #expect(refused?.code == .invalidArgument && refused?.code.exitStatus == 64)
        #expect(refused?.message.contains("another host") == true)
        let unreachable = await #expect(throws: ThinError.self) { _ = try await SchemeScripts.attach("file:///no/such.raw") }
        #expect(unreachable?.code == .backendFailure && unreachable?.code.exitStatus == 1)
    }

    @Test("URI schemes, names from URIs, dm-clone's status and region sizes")
    func parsing() throws {
        #expect(try SchemeScripts.scheme(of: "NBD+unix:///x?socket=/s") == "nbd+unix")
        #expect(throws: ThinError.self) { try SchemeScripts.scheme(of: "/srv/x.qcow2") }
        #expect(throws: ThinError.self) { try SchemeScripts.scheme(of: "1ab://x") }
        #expect(SRTemplates.templateName("file:///srv/images/debian-12.qcow2") == "debian-12.qcow2")
        #expect(SRTemplates.templateName("nbd+unix:///?socket=/run/x.sock") == "template")
        let progress = try #require(HydrationProgress(status: "8 72/4096 128 300/512 4 2 no_hydration no_discard_passdown 2 hydration_threshold 64 rw"))
        #expect(progress.hydratedRegions == 300 && progress.totalRegions == 512 && !progress.isComplete)
        #expect(HydrationProgress(status: "Fail") == nil)
        #expect(AttachedSR.regionSectors(blockBytes: 65536) == 128)
        #expect(AttachedSR.regionSectors(blockBytes: 196608) == 128)   // 384 sectors: its largest power of two
        #expect(AttachedSR.regionSectors(blockBytes: 1 << 30) == 1 << 21)
        #expect(CloneMessage(text: "hydration_threshold 16") == .hydrationThreshold(16))
        #expect(CloneMessage.enableHydration.text == "enable_hydration")
        #expect(StatsMessage.create(areaSectors: 128).text == "@stats_create - 128")
        #expect(StatsMessage(text: "@stats_print_clear 3 0 8192") == .printClear(region: 3, first: 0, count: 8192))
        #expect(StatsMessage(text: "@stats_create 0+8 128") == nil)
        // dm-stats lines: <start>+<length> <reads> <merged> <sectors read> ...; the areas with a read.
        let lines = "0+128 0 0 0 0 3 0 24 0 0 1 1 0 1\n128+128 2 0 16 1 0 0 0 0 0 1 1 1 0\n"
            + "384+128 1 0 8 0 0 0 0 0 0 1 1 1 0\n"
        #expect(Hydration.areasRead(lines, areaBytes: 65536) == [1, 3])
        #expect(Hydration.areasRead("", areaBytes: 65536).isEmpty)
    }
}
