import ThinCommands

/// The multi-call binary: `make install` links every tool name to it, and it
/// runs the tool its `argv[0]` names (as lvm(8) does for lvcreate).
@main
enum Entrypoint {
    static func main() async { await MultiCall.main() }
}
