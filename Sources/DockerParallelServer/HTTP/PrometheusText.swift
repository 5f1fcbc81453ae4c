import DockerParallelCore

/// The server's state in the Prometheus text exposition format (version 0.0.4).
enum PrometheusText {
    /// Renders a report, with whether the store's disk is full and the store's size in bytes.
    static func render(_ report: ServerReport, storageFull: Bool, storeBytes: Int?) -> String {
        var text = ""
        func metric(_ name: String, _ kind: String, _ help: String, _ samples: [(labels: [(String, String)], value: Double)]) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(kind)\n"
            for sample in samples {
                let labels = sample.labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",")
                text += labels.isEmpty ? name : "\(name){\(labels)}"
                text += " \(format(sample.value))\n"
            }
        }
        let queue = [("queue", report.jobQueueName)]
        metric("dockerparallel_server_uptime_seconds", "gauge", "Seconds since the server last started.", [(queue, report.uptime.inSeconds)])
        metric(
            "dockerparallel_server_restarts_total", "counter", "Times the server was started again on its store.",
            [(queue, Double(report.restarts))])
        metric("dockerparallel_workers_connected", "gauge", "Worker processes connected.", [(queue, Double(report.workers.count))])
        metric("dockerparallel_worker_slots", "gauge", "Worker slots connected.", [(queue, Double(report.workerSlots))])
        metric(
            "dockerparallel_worker_tasks_running", "gauge", "Tasks each connected worker runs.",
            report.workers.map { (queue + [("worker", $0.name)], Double($0.running)) })
        var tasks: [(labels: [(String, String)], value: Double)] = []
        for job in report.jobs {
            let states: [(String, Int)] = [
                ("queued", job.queued), ("running", job.running), ("succeeded", job.succeeded), ("failed", job.failed),
                ("cancelled", job.cancelled),
            ]
            for (state, count) in states { tasks.append((queue + [("job", job.jobID.rawValue), ("state", state)], Double(count))) }
        }
        metric("dockerparallel_job_tasks", "gauge", "Tasks of each job on the server, by state.", tasks)
        metric("dockerparallel_jobs", "gauge", "Jobs on the server.", [(queue, Double(report.jobs.count))])
        metric(
            "dockerparallel_storage_full", "gauge", "1 while the store's disk is full and no new job is taken.",
            [(queue, storageFull ? 1 : 0)])
        if let storeBytes {
            metric("dockerparallel_store_bytes", "gauge", "Bytes the store takes on disk.", [(queue, Double(storeBytes))])
        }
        return text
    }

    /// A label value with `\`, `"` and newlines escaped.
    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : "\(value)"
    }
}
