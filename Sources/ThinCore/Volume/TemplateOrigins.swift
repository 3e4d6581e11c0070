import FoundationEssentials
import ThinDeviceMapper
import ThinTools
import CThinShims
#if canImport(Glibc)
import Glibc
#endif

/// Scheme scripts resolve a template's URI to a local image, as xapi's
/// storage scripts do: `<directory>/<scheme> attach URI` prints the image's
/// path (a file or a block device), `<directory>/<scheme> detach URI PATH`
/// releases it. A scheme `a+b` (`nbd+unix`) is served by the script `a`.
public enum SchemeScripts {
    public static let systemDirectory = "/usr/libexec/xapi/storage"

    /// THINSR_SCHEME_DIR alone when set; else the system directory, then the
    /// same directory under the root this binary was installed into (a
    /// `make install DESTDIR=...` that is run from there).
    static var directories: [String] {
        if let directory = Paths.environment("THINSR_SCHEME_DIR") { return [directory] }
        var found = [systemDirectory]
        var parent = System.executablePath() ?? ""
        for _ in 0..<4 where parent.count > 1 {
            parent = String(parent[..<(parent.lastIndex(of: "/") ?? parent.startIndex)])
            found.append("\(parent)/libexec/xapi/storage")
        }
        return found
    }

    /// The URI's scheme (`file` in `file:///x`), validated.
    public static func scheme(of uri: String) throws(ThinError) -> String {
        guard let colon = uri.firstIndex(of: ":"), colon != uri.startIndex else {
            throw .invalid("\"\(uri)\" is not a URI; give one such as file:///srv/images/debian.qcow2 or "
                           + "nbd://host:10809/export")
        }
        let scheme = uri[..<colon].lowercased()
        guard let first = scheme.first, first.isLetter,
              scheme.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) }) else {
            throw .invalid("\"\(uri)\" has no valid URI scheme; give one such as file:///srv/images/debian.qcow2")
        }
        return scheme
    }

    /// The script that serves `uri`'s scheme.
    static func script(for uri: String) throws(ThinError) -> String {
        let scheme = try scheme(of: uri)
        let name = String(scheme.split(separator: "+").first ?? Substring(scheme))
        for directory in directories where access("\(directory)/\(name)", X_OK) == 0 { return "\(directory)/\(name)" }
        throw .invalid("no scheme script for \"\(scheme)\" URIs: add an executable \(name) to "
                       + "\(directories[0]) (it is run as `\(name) attach URI` and `\(name) detach URI PATH`)")
    }

    /// The image's local path.
    static func attach(_ uri: String) async throws(ThinError) -> String {
        let script = try script(for: uri)
        let result: ExternalCommandResult
        do { result = try await ExternalCommand.run(.at(script), ["attach", uri]) } catch {
            throw .backend("cannot run the scheme script \(script)", error)
        }
        // Scripts exit 64 for a URI they cannot take (bad usage or URI): the caller's to fix.
        guard result.exitStatus != 64 else {
            throw .invalid("template \(uri) is refused by \(script): \(messageLine(result.standardError))")
        }
        guard result.exitStatus == 0 else {
            throw ThinError(.backendFailure, "template \(uri) cannot be reached: \(script) attach failed (exit "
                            + "\(result.exitStatus)): \(messageLine(result.standardError))")
        }
        // Exactly one line, the path: a path with a newline in it must not pick another line.
        var output = Substring(result.standardOutput)
        if output.last == "\n" { output = output.dropLast() }
        let path = String(output)
        guard !path.isEmpty, !path.contains(where: { $0.isNewline || ($0.asciiValue ?? 32) < 32 || $0 == "\u{7f}" }),
              path.hasPrefix("/"), System.exists(path) else {
            throw ThinError(.backendFailure, "template \(uri): \(script) attach printed no existing path "
                            + "(\"\(messageLine(result.standardOutput))\")")
        }
        return path
    }

    /// Releases what `attach` made; a failure is only traced (the image is not ours to repair).
    static func detach(_ uri: String, path: String) {
        guard let script = try? script(for: uri) else { return }
        ExternalCommand.runToEnd(.at(script), ["detach", uri, path])
    }
}

/// What this host did to bring one template's image up, kept in
/// `/run/thinsr/<sr>/origins/<template>` so the last detach can undo it.
struct OriginRecord: Codable, Equatable {
    var uri: String
    /// What the scheme script printed.
    var image: String
    /// The block device under the origin's dm device.
    var device: String
    /// How `device` was made from `image`: "loop", "nbd", or nil (it is the image).
    var helper: String?
}

/// Templates' images as read-only block devices for the thin devices that
/// read them. One origin device per template per host, shared by every
/// volume reading it; the kernel's open count of it is the reference count,
/// so nothing stored can drift: the last volume to close it releases it.
struct TemplateOrigins {
    let names: SRNames
    let deviceMapper: any DeviceMapperControl

    func path(_ template: UUID) -> String { names.originDevice(template).path }
    private func statePath(_ template: UUID) -> String { "\(names.originStateDirectory)/\(template.lowercased)" }

    /// Brings the template's image up (once per host) and returns the origin
    /// device's path. An origin whose image stopped answering (its NBD
    /// server went away) is brought up again under the volumes using it.
    func bringUp(_ template: VolumeRecord, _ recovered: DevicesRecovered) async throws(ThinError) -> String {
        let device = names.originDevice(template.uuid)
        let info: DeviceInfo?
        do { info = try deviceMapper.info(name: device.name) } catch { throw .backend("cannot query \(device.name)", error) }
        if let info, info.suspended, info.hasLiveTable {
            // A process killed while it pointed the origin at a fresh image left it suspended.
            try? deviceMapper.resume(name: device.name, udev: .standard)
        }
        if let info, info.hasLiveTable {
            if DirectIO.canRead(device.path) { return device.path }
            do { return try await replace(template, stale: info, recovered) } catch {
                // qemu's NBD client reconnects by itself when its export returns: it may have meanwhile.
                if DirectIO.canRead(device.path) { return device.path }
                throw error
            }
        }
        if info != nil { try? deviceMapper.remove(name: device.name) }
        // A process killed between recording an image and making its device left the image exposed.
        if let stale = load(template.uuid) {
            unexpose(stale)
            System.removeFile(statePath(template.uuid))
        }
        let record = try await expose(template)
        // Recorded first, so a process killed before the device exists still leaves what to undo.
        save(record, for: template.uuid)
        do {
            try deviceMapper.create(name: device.name, uuid: device.dmUUID, table: [originTable(template, record)],
                                    readOnly: true, udev: .standard)
        } catch {
            unexpose(record)
            System.removeFile(statePath(template.uuid))
            throw .backend("cannot make the origin device of template \(template.key)", error)
        }
        return device.path
    }

    /// Points a live origin device at a freshly exposed image, so the
    /// volumes reading it read again; the dead image is released.
    private func replace(_ template: VolumeRecord, stale: DeviceInfo,
                         _ recovered: DevicesRecovered) async throws(ThinError) -> String {
        let device = names.originDevice(template.uuid)
        let old = load(template.uuid)
        let record = try await expose(template)
        // Under the devices-changing marker: an origin a killed or failed swap left suspended is resumed
        // by the next command, which reconciles origins too.
        try recovered.changing { () throws(ThinError) in
            do {
                try deviceMapper.reload(name: device.name, table: [originTable(template, record)], readOnly: true)
                FaultInjection.point("origin-reloaded")
                try deviceMapper.resume(name: device.name, udev: .standard)
            } catch {
                unexpose(record)
                throw .backend("cannot point the origin of template \(template.key) at its image again", error)
            }
        }
        save(record, for: template.uuid)
        if let old { unexpose(old) }
        guard DirectIO.canRead(device.path) else {
            throw ThinError(.backendFailure, "template \(template.key)'s image \(template.templateURI ?? "") was "
                            + "brought up again but still cannot be read")
        }
        return device.path
    }

    private func originTable(_ template: VolumeRecord, _ record: OriginRecord) -> TableLine {
        LinearTable(device: record.device).line(lengthSectors: template.virtualSize / 512)
    }

    /// Resolves the URI and makes its image a block device: a raw block
    /// device is used as it is, a raw file through a read-only loop device,
    /// any other format through `qemu-nbd --read-only` on a kernel nbd device.
    private func expose(_ template: VolumeRecord) async throws(ThinError) -> OriginRecord {
        let uri = template.templateURI ?? ""
        let format = template.templateFormat ?? ImageFormat.raw.rawValue
        let image = try await SchemeScripts.attach(uri)
        var record = OriginRecord(uri: uri, image: image, device: image, helper: nil)
        do throws(ThinError) {
            if format != ImageFormat.raw.rawValue {
                // The image may have changed since it was introduced: inspect it again before qemu opens it.
                let inspected: InspectedImage
                do { inspected = try ImageInspector.inspect(image, declared: ImageFormat(rawValue: format), what: uri) } catch {
                    throw ThinError(.backendFailure, "template \(template.key) cannot be read: \(error.message)")
                }
                record.device = try await Self.connectNBD(inspected)
                record.helper = "nbd"
            } else if System.blockDevice(image) == nil {
                record.device = try await Self.attachLoop(image)
                record.helper = "loop"
            }
            guard let size = System.blockDeviceSize(record.device), size >= template.virtualSize else {
                throw ThinError(.backendFailure, "template \(template.key)'s image \(uri) is now "
                                + "\(System.blockDeviceSize(record.device).map(ByteSize.format) ?? "unreadable"), "
                                + "not the \(ByteSize.format(template.virtualSize)) it was introduced with; "
                                + "a template's image must not change")
            }
        } catch {
            unexpose(record)
            throw error
        }
        return record
    }

    private func unexpose(_ record: OriginRecord) {
        switch record.helper {
        case "loop": ExternalCommand.runToEnd(Program.loopSetup, ["--detach", record.device])
        case "nbd": NBDDevices.disconnect(record.device)
        default: break
        }
        SchemeScripts.detach(record.uri, path: record.image)
    }

    /// Attaches `file` to a free loop device (read-only unless `writable`).
    static func attachLoop(_ file: String, writable: Bool = false,
                           what: String = "the template image") async throws(ThinError) -> String {
        let output: String
        do {
            output = try await ExternalCommand.check(Program.loopSetup, ["--find", "--show"] + (writable ? [] : ["--read-only"]) + [file])
        } catch {
            throw .backend("cannot attach \(what) \(file) to a loop device", error)
        }
        return output.split(whereSeparator: \.isWhitespace).first.map(String.init) ?? ""
    }

    /// Serves `image` read-only on the first free /dev/nbdN (qemu-nbd
    /// --connect forks a server bound to that device and returns when it is up).
    static func connectNBD(_ inspected: InspectedImage) async throws(ThinError) -> String {
        try await NBDDevices.connect(["--read-only"] + inspected.qemuSource,
                                     for: "serve \(inspected.path) as \(inspected.format.rawValue)").device
    }

    /// Releases the template's origin when no device reads it any more.
    /// Returns whether it is gone.
    @discardableResult
    func releaseIfUnused(_ template: UUID) -> Bool {
        let device = names.originDevice(template)
        let info: DeviceInfo?
        do { info = try deviceMapper.info(name: device.name) } catch { return false }   // unknown: keep it
        if let info {
            guard info.openCount == 0 else { return false }
            do { try deviceMapper.remove(name: device.name) } catch { return false }
        }
        if let record = load(template) { unexpose(record) }
        System.removeFile(statePath(template))
        return true
    }

    /// Every origin this host brought up for the SR, by template.
    func broughtUp() -> [UUID] {
        var found = Set(System.directoryEntries(names.originStateDirectory).compactMap(UUID.init(uuidString:)))
        for name in (try? deviceMapper.list()) ?? [] {
            if case .origin(let uuid)? = DmName(validating: name).flatMap(names.owned) { found.insert(uuid) }
        }
        return Array(found)
    }

    private func save(_ record: OriginRecord, for template: UUID) {
        guard let data = try? JSONEncoder().encode(record), let text = String(data: data, encoding: .utf8) else { return }
        try? System.makeDirectories(names.originStateDirectory)
        try? System.writeFile(statePath(template), text)
    }

    /// The image path and device this host brought the template up with.
    func record(_ template: UUID) -> OriginRecord? { load(template) }

    private func load(_ template: UUID) -> OriginRecord? {
        guard let text = System.readFile(statePath(template)) else { return nil }
        return try? JSONDecoder().decode(OriginRecord.self, from: Data(text.utf8))
    }
}
