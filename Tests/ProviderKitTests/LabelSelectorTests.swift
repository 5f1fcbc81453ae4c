import ProviderKit
import Testing

@Suite struct LabelSelectorTests {
    let selector = LabelSelector(["dockerparallel.role": "worker", "dockerparallel.queue": "q1"])

    @Test func rendersDockerFiltersSortedByKey() {
        #expect(selector.dockerFilters == #"{"label":["dockerparallel.queue=q1","dockerparallel.role=worker"]}"#)
        #expect(selector.dockerFiltersQuery == QueryItem("filters", selector.dockerFilters))
    }

    @Test func rendersAKubernetesLabelSelector() {
        #expect(selector.kubernetesLabelSelector == "dockerparallel.queue=q1,dockerparallel.role=worker")
        #expect(LabelSelector(["app.kubernetes.io/name": "dockerparallel"]).kubernetesLabelSelector == "app.kubernetes.io/name=dockerparallel")
    }

    @Test func slashesInKeysAreNotEscapedForDocker() {
        #expect(LabelSelector(["app.kubernetes.io/name": "x"]).dockerFilters == #"{"label":["app.kubernetes.io/name=x"]}"#)
    }

    @Test func addingAKeyKeepsTheOthersAndReplacesItsValue() {
        let base = LabelSelector(["dockerparallel.queue": "q1"])
        #expect(base.adding("dockerparallel.role", "worker") == selector)
        #expect(selector.adding("dockerparallel.role", "server").labels["dockerparallel.role"] == "server")
        #expect(base.labels.count == 1)
    }

    @Test func anEmptySelectorSelectsEverything() {
        #expect(LabelSelector().dockerFilters == #"{"label":[]}"#)
        #expect(LabelSelector().kubernetesLabelSelector == "")
        #expect(LabelSelector().matches(nil))
    }

    @Test func matchesResourcesCarryingEveryLabel() {
        #expect(selector.matches(["dockerparallel.queue": "q1", "dockerparallel.role": "worker", "other": "x"]))
        #expect(!selector.matches(["dockerparallel.queue": "q1"]))
        #expect(!selector.matches(["dockerparallel.queue": "q2", "dockerparallel.role": "worker"]))
        #expect(!selector.matches(nil))
    }
}
