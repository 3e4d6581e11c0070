import ThinCommands

@main
enum Entrypoint {
    static func main() async { await VDIMirror.launch() }
}
