import Testing
import ThinDeviceMapper

@Suite("pool messages and thin device ids")
struct PoolMessageTests {
    @Test(arguments: [PoolMessage.createThin(7), .createSnapshot(8, origin: 7), .delete(3),
                      .setTransactionID(old: 4, new: 5), .reserveMetadataSnapshot, .releaseMetadataSnapshot])
    func roundTrip(message: PoolMessage) {
        #expect(PoolMessage(text: message.text) == message)
    }

    @Test("the kernel's spelling of each message")
    func spelling() {
        #expect(PoolMessage.createSnapshot(8, origin: 7).text == "create_snap 8 7")
        #expect(PoolMessage.setTransactionID(old: 4, new: 5).text == "set_transaction_id 4 5")
        #expect(PoolMessage.reserveMetadataSnapshot.text == "reserve_metadata_snap")
    }

    @Test func createdAndDeleted() {
        #expect(PoolMessage.createThin(7).createdID == 7)
        #expect(PoolMessage.createSnapshot(8, origin: 7).createdID == 8)
        #expect(PoolMessage.delete(3).createdID == nil && PoolMessage.delete(3).deletedID == 3)
        #expect(PoolMessage.setTransactionID(old: 1, new: 2).createdID == nil)
    }

    @Test(arguments: ["", "create_thin", "create_thin x", "delete 1 2", "frob 1", "create_thin 16777216",
                      "delete -1", "create_snap 1", "set_transaction_id 1", "delete  1"])
    func malformed(text: String) { #expect(PoolMessage(text: text) == nil) }

    @Test("ids are 24-bit and wrap from the largest to the first")
    func ids() {
        #expect(ThinDeviceID(UInt32(1 << 24)) == nil)
        #expect(ThinDeviceID(UInt32((1 << 24) - 1)) == .maximum)
        #expect(ThinDeviceID.maximum.successor == .first)
        #expect(ThinDeviceID(41 as UInt32)?.successor == 42)
        #expect(ThinDeviceID(Int64(-1)) == nil)
    }

    @Test("errnos callers branch on have names")
    func reasons() {
        #expect(DeviceMapperError(operation: "remove", device: "d", reason: .noSuchDevice).reason == .noSuchDevice)
        #expect(DeviceMapperError(operation: "message", device: "p", reason: .busy).reason == .busy)
        #expect(DeviceMapperError(operation: "message", device: "p", reason: .alreadyExists).reason == .alreadyExists)
        #expect(DeviceMapperError(operation: "message", device: "p", reason: .noData).reason == .noData)
        #expect(DeviceMapperError(operation: "x", device: "p", errno: 0).reason == .other)
    }
}
