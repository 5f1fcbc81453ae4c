import Foundation

/// Resources that carry every one of some labels (or tags): `key=value` pairs, rendered as each
/// platform wants them.
///
/// ```swift
/// let selector = LabelSelector(["dockerparallel.queue": name, "dockerparallel.role": "worker"])
/// selector.dockerFilters          // {"label":["dockerparallel.queue=q","dockerparallel.role=worker"]}
/// selector.kubernetesLabelSelector // dockerparallel.queue=q,dockerparallel.role=worker
/// ```
package struct LabelSelector: Sendable, Hashable, CustomStringConvertible {
    /// The labels every selected resource carries.
    package private(set) var labels: [String: String]

    /// Creates a selector of these labels.
    package init(_ labels: [String: String] = [:]) {
        self.labels = labels
    }

    /// A selector that also requires `key=value`.
    package func adding(_ key: String, _ value: String) -> LabelSelector {
        var copy = self
        copy.labels[key] = value
        return copy
    }

    /// The pairs, sorted by key, as `key=value`.
    package var pairs: [String] { labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } }

    /// The Docker Engine API's `filters` query value: `{"label":["key=value",…]}`.
    package var dockerFilters: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding strings in an array of a dictionary cannot fail.
        let data = (try? encoder.encode(["label": pairs])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// The Docker Engine API's `filters` query item.
    package var dockerFiltersQuery: QueryItem { QueryItem("filters", dockerFilters) }

    /// The Kubernetes API's `labelSelector` query value: `key=value,key=value`.
    package var kubernetesLabelSelector: String { pairs.joined(separator: ",") }

    /// Whether a resource with these labels is selected.
    package func matches(_ resourceLabels: [String: String]?) -> Bool {
        labels.allSatisfy { resourceLabels?[$0.key] == $0.value }
    }

    /// `key=value,key=value`.
    package var description: String { kubernetesLabelSelector }
}
