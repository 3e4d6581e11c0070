/// Undo steps for a multi-step operation, run newest first on failure.
struct UndoStack {
    private var steps: [() -> Void] = []
    mutating func push(_ step: @escaping () -> Void) { steps.append(step) }
    mutating func discard() { steps.removeAll() }
    mutating func run() {
        for step in steps.reversed() { step() }
        steps.removeAll()
    }
}
