import Testing
@testable import ThinTrace

@Suite("the operations log (-v, THINSR_LOG)")
struct TraceTests {
    @Test("a step's time prints as milliseconds with one decimal, without Foundation")
    func milliseconds() {
        #expect(Trace.milliseconds(.milliseconds(12) + .microseconds(340)) == "12.3 ms")
        #expect(Trace.milliseconds(.seconds(2)) == "2000.0 ms")
        #expect(Trace.milliseconds(.microseconds(50)) == "0.0 ms")
        #expect(Trace.milliseconds(.seconds(1) + .milliseconds(5)) == "1005.0 ms")
    }
}
