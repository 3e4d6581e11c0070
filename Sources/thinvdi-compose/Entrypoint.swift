import ThinCommands

@main
enum Entrypoint {
    static func main() async { await VDICompose.launch() }
}
