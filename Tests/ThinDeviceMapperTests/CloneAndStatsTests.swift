import Testing
import ThinDeviceMapper

@Suite("clone status lines and the messages of each target")
struct CloneAndStatsTests {
    @Test("a clone's status as the kernel writes it (four core arguments)")
    func cloneStatus() throws {
        let status = try #require(CloneStatus(parameters:
            "8 72/4096 128 300/512 4 2 no_hydration no_discard_passdown 4 hydration_threshold 64 hydration_batch_size 1 rw"))
        guard case .active(let usage) = status else { Issue.record("expected active, got \(status)"); return }
        #expect(usage.metadataBlockSectors == 8 && usage.usedMetadataBlocks == 72 && usage.totalMetadataBlocks == 4096)
        #expect(usage.regionSectors == 128 && usage.hydratedRegions == 300 && usage.totalRegions == 512)
        #expect(usage.hydratingRegions == 4)
        #expect(usage.features == [.noHydration, .noDiscardPassdown])
        #expect(usage.hydrationThreshold == 64 && usage.hydrationBatchSize == 1)
        #expect(usage.mode == .readWrite)
    }

    @Test("a clone hydrating in the background, read-only metadata, and a failed clone")
    func cloneStatusVariants() throws {
        guard case .active(let usage)? = CloneStatus(parameters: "8 10/100 8 512/512 0 0 2 hydration_threshold 1 ro")
        else { Issue.record("no parse"); return }
        #expect(usage.features.isEmpty && usage.hydrationThreshold == 1 && usage.hydrationBatchSize == nil)
        #expect(usage.mode == .readOnly && usage.hydratedRegions == usage.totalRegions)
        #expect(CloneStatus(parameters: "Fail") == .failed)
    }

    @Test("malformed clone status lines", arguments: [
        "", "8 72/4096 128", "8 72/4096 128 600/512 0 0 0 rw", "8 x/4096 128 1/2 0 0 0 rw",
        "8 1/2 128 3/4 0 1 frob 0 rw", "8 1/2 128 3/4 0 0 3 a b c rw", "8 1/2 128 3/4 0 0 0 zz",
        "8 1/2 128 3/4 0 0 0 rw rw", "Fail now",
    ])
    func cloneStatusMalformed(line: String) { #expect(CloneStatus(parameters: line) == nil) }

    @Test(arguments: [CloneMessage.enableHydration, .disableHydration, .hydrationThreshold(16)])
    func cloneMessageRoundTrip(message: CloneMessage) {
        #expect(CloneMessage(text: message.text) == message)
        #expect(DeviceMessage(text: message.text) == .clone(message))
    }

    @Test("the kernel's spelling of the clone and statistics messages")
    func spelling() {
        #expect(CloneMessage.disableHydration.text == "disable_hydration")
        #expect(CloneMessage.hydrationThreshold(64).text == "hydration_threshold 64")
        #expect(StatsMessage.printClear(region: 3, first: 0, count: 1).text == "@stats_print_clear 3 0 1")
        #expect(StatsMessage.delete(region: 2).text == "@stats_delete 2")
        #expect(DeviceMessage.stats(.create(areaSectors: 8)).text == "@stats_create - 8")
        #expect(DeviceMessage.pool(.createThin(5)).text == "create_thin 5")
    }

    @Test(arguments: [StatsMessage.create(areaSectors: 128), .printClear(region: 1, first: 4096, count: 4096),
                      .delete(region: 0)])
    func statsMessageRoundTrip(message: StatsMessage) {
        #expect(StatsMessage(text: message.text) == message)
        #expect(DeviceMessage(text: message.text) == .stats(message))
    }

    @Test("each kind parses only its own messages", arguments: [
        "@stats_create - 0", "@stats_delete", "hydration_threshold", "hydration_threshold x", "enable_hydration 1",
        "@stats_print_clear 1 2", "",
    ])
    func messagesMalformed(text: String) {
        #expect(StatsMessage(text: text) == nil && CloneMessage(text: text) == nil && DeviceMessage(text: text) == nil)
    }

    @Test("pool messages stay pool messages")
    func kinds() {
        #expect(DeviceMessage(text: "delete 3") == .pool(.delete(3)))
        #expect(PoolMessage(text: "enable_hydration") == nil && PoolMessage(text: "@stats_delete 1") == nil)
        #expect(CloneMessage(text: "delete 3") == nil && StatsMessage(text: "delete 3") == nil)
    }
}
