import DockerParallelCore
import Testing

@Suite struct ScalingPlanTests {
    typealias Container = ScalingPlan.Container

    /// `count` containers of `slots` each, numbered 1... in creation order.
    func containers(_ count: Int, slots: Int = 1) -> [Container] {
        (1...max(1, count)).prefix(count).map { Container(id: "c\($0)", slots: slots, order: Int64($0)) }
    }

    struct ScaleUp: Sendable, CustomTestStringConvertible {
        var running: Int
        var perContainer: Int
        var wanted: Int
        var sizes: [Int]
        var testDescription: String { "\(running) running, \(perContainer) per container, \(wanted) wanted" }
    }

    @Test(arguments: [
        ScaleUp(running: 0, perContainer: 1, wanted: 3, sizes: [1, 1, 1]),
        ScaleUp(running: 1, perContainer: 1, wanted: 3, sizes: [1, 1]),
        ScaleUp(running: 0, perContainer: 2, wanted: 3, sizes: [2, 1]),
        ScaleUp(running: 0, perContainer: 4, wanted: 10, sizes: [4, 4, 2]),
        ScaleUp(running: 2, perContainer: 3, wanted: 3, sizes: [1]),
        ScaleUp(running: 0, perContainer: 0, wanted: 2, sizes: [1, 1]),
        ScaleUp(running: 3, perContainer: 2, wanted: 3, sizes: []),
    ])
    func scalingUpStartsContainersOfAtMostTheirSlots(_ example: ScaleUp) {
        let plan = ScalingPlan(current: containers(example.running), slotsPerContainer: example.perContainer, wantedWorkers: example.wanted)
        #expect(plan.sizesToStart == example.sizes)
        #expect(plan.idsToStop.isEmpty)
        #expect(plan.sizesToStart.allSatisfy { $0 <= max(1, example.perContainer) })
    }

    @Test func scalingDownStopsTheNewestFirst() {
        let plan = ScalingPlan(current: containers(5).shuffled(), slotsPerContainer: 1, wantedWorkers: 2)
        #expect(plan.idsToStop == ["c5", "c4", "c3"])
        #expect(plan.sizesToStart.isEmpty)
    }

    @Test(arguments: [0, 1, 3])
    func scalingToZeroStopsEveryContainer(slots: Int) {
        let current = containers(4, slots: max(1, slots))
        let plan = ScalingPlan(current: current, slotsPerContainer: slots, wantedWorkers: 0)
        #expect(Set(plan.idsToStop) == Set(current.map(\.id)))
        #expect(plan.sizesToStart.isEmpty)
    }

    @Test func zeroWantedOfNothingIsNothing() {
        #expect(ScalingPlan(current: [], slotsPerContainer: 2, wantedWorkers: 0).isEmpty)
        #expect(ScalingPlan(current: [], slotsPerContainer: 2, wantedWorkers: -1).isEmpty)
    }

    @Test func theRightNumberIsLeftAlone() {
        #expect(ScalingPlan(current: containers(2, slots: 2), slotsPerContainer: 2, wantedWorkers: 4).isEmpty)
    }

    @Test func idleContainersStopBeforeUnknownOnesAndThoseBeforeBusyOnes() {
        let current = [
            Container(id: "busy-new", slots: 1, order: 9, activity: .busy),
            Container(id: "idle-old", slots: 1, order: 1, activity: .idle),
            Container(id: "unknown-new", slots: 1, order: 8),
            Container(id: "idle-new", slots: 1, order: 5, activity: .idle),
            Container(id: "busy-old", slots: 1, order: 2, activity: .busy),
        ]
        #expect(ScalingPlan(current: current, slotsPerContainer: 1, wantedWorkers: 3).idsToStop == ["idle-new", "idle-old"])
        #expect(ScalingPlan(current: current, slotsPerContainer: 1, wantedWorkers: 1).idsToStop
            == ["idle-new", "idle-old", "unknown-new", "busy-new"])
    }

    /// A container larger than what is left of the excess is kept: the cluster keeps more workers
    /// than wanted rather than fewer.
    @Test func neverStopsMoreWorkersThanTheExcess() {
        // 4 + 4 slots, 6 wanted: stopping either would leave 4.
        #expect(ScalingPlan(current: containers(2, slots: 4), slotsPerContainer: 4, wantedWorkers: 6).isEmpty)
        // 4, 2, 1 (newest) and 3 wanted: the 1 and the 2 go, the 4 does not fit in what is left.
        let mixed = [
            Container(id: "four", slots: 4, order: 1),
            Container(id: "two", slots: 2, order: 2),
            Container(id: "one", slots: 1, order: 3),
        ]
        #expect(ScalingPlan(current: mixed, slotsPerContainer: 4, wantedWorkers: 3).idsToStop == ["one", "two"])
        // The newest does not fit in the excess, an older one does: the older goes.
        let newestLarge = [Container(id: "two", slots: 2, order: 1), Container(id: "four", slots: 4, order: 2)]
        #expect(ScalingPlan(current: newestLarge, slotsPerContainer: 4, wantedWorkers: 4).idsToStop == ["two"])
    }

    @Test(arguments: 0...12, [1, 2, 3, 5])
    func theResultIsNeverBelowWantedAndOnlyAboveWhenNoContainerFits(wanted: Int, perContainer: Int) {
        let current = [
            Container(id: "a", slots: 3, order: 1), Container(id: "b", slots: 1, order: 2),
            Container(id: "c", slots: 2, order: 3), Container(id: "d", slots: 1, order: 4, activity: .busy),
        ]
        let plan = ScalingPlan(current: current, slotsPerContainer: perContainer, wantedWorkers: wanted)
        let kept = current.filter { !plan.idsToStop.contains($0.id) }
        let total = kept.reduce(0) { $0 + $1.slots } + plan.sizesToStart.reduce(0, +)
        #expect(total >= wanted)
        if total > wanted {
            #expect(plan.sizesToStart.isEmpty)
            #expect(kept.allSatisfy { $0.slots > total - wanted }, "a kept container fits in the excess \(total - wanted)")
        }
        #expect(plan.sizesToStart.isEmpty || plan.idsToStop.isEmpty)
    }

    @Test func equalCreationOrdersAreBrokenByIdSoThePlanIsDeterministic() {
        let current = [Container(id: "x", slots: 1, order: 7), Container(id: "y", slots: 1, order: 7), Container(id: "z", slots: 1, order: 7)]
        #expect(ScalingPlan(current: current, slotsPerContainer: 1, wantedWorkers: 1).idsToStop == ["z", "y"])
        #expect(ScalingPlan(current: current.reversed(), slotsPerContainer: 1, wantedWorkers: 1).idsToStop == ["z", "y"])
    }

    @Test func theServersReportGivesEachContainerItsActivity() {
        #expect(ScalingPlan.activity(of: "w1", in: nil) == .unknown)
        #expect(ScalingPlan.activity(of: "w1", in: ["w1": 2]) == .busy)
        #expect(ScalingPlan.activity(of: "w1", in: ["w1": 0]) == .idle)
        #expect(ScalingPlan.activity(of: "w1", in: ["w2": 3]) == .idle, "not connected yet: nothing to lose")
    }
}
