import Testing

@testable import StarlingSTOMP

@Suite("STOMPCommand and STOMPVersion")
struct STOMPCommandTests {
    @Test("Exactly CONNECTED, MESSAGE, RECEIPT and ERROR are server commands")
    func clientCommands() {
        let server = STOMPCommand.allCases.filter { !$0.isClientCommand }
        #expect(server == [.connected, .message, .receipt, .error])
        #expect(STOMPCommand.allCases.count == 15)
    }

    @Test("Versions order oldest to newest and round-trip through their raw value")
    func versionOrder() {
        #expect(STOMPVersion.v1_0 < .v1_1 && STOMPVersion.v1_1 < .v1_2)
        #expect(STOMPVersion.allCases.max() == .v1_2)
        #expect(STOMPVersion(rawValue: "1.1") == .v1_1)
    }
}
