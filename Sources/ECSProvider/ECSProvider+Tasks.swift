import DockerParallelCore
import Foundation
import ProviderKit

extension ECSProvider {
    /// The tasks of a family that ECS still runs or starts (desired status RUNNING), described.
    func tasks(_ names: ECSNames, family: String) async throws -> [ECSTask] {
        let cluster = clusterName(names)
        var arns: [String] = []
        var token: String?
        repeat {
            let page: ListTasksOutput
            do {
                page = try await ecs.json(
                    "ListTasks",
                    ListTasksInput(cluster: cluster, family: family, startedBy: nil, desiredStatus: "RUNNING", nextToken: token, maxResults: 100),
                    as: ListTasksOutput.self)
            } catch let error as AWSServiceError where error.code == "ClusterNotFoundException" {
                return []
            } catch let error as AWSServiceError {
                throw DockerParallelError(.providerFailed, Self.explain(error, region: region))
            }
            arns += page.taskArns ?? []
            token = page.nextToken
        } while token != nil
        return try await describe(names, arns)
    }

    /// DescribeTasks, 100 at a time, with tags.
    func describe(_ names: ECSNames, _ arns: [String]) async throws -> [ECSTask] {
        var tasks: [ECSTask] = []
        for start in stride(from: 0, to: arns.count, by: 100) {
            let batch = Array(arns[start..<min(start + 100, arns.count)])
            let answer = try await aws {
                try await ecs.json(
                    "DescribeTasks", DescribeTasksInput(cluster: clusterName(names), tasks: batch, include: ["TAGS"]),
                    as: DescribeTasksOutput.self)
            }
            tasks += answer.tasks ?? []
        }
        return tasks
    }

    /// The server's task that runs or starts, the newest if there are several.
    func serverTask(_ names: ECSNames) async throws -> ECSTask? {
        try await tasks(names, family: names.serverFamily).filter { !$0.isStopping }.max { ($0.createdAt ?? 0) < ($1.createdAt ?? 0) }
    }

    /// Waits until the server's task runs and has an address.
    /// - Throws: `.serverStartFailed` with the task's stop reason, exit code and where its log
    ///   is, when it stopped; `.timedOut` after the start timeout.
    /// - Parameter appearingWithin: How long a server task may take to be listed at all
    ///   (ListTasks may miss a task for a moment after RunTask; another process may still be
    ///   preparing to start it).
    /// - Parameter started: The server task this process just started, if it did: one that
    ///   stops before it is ever listed as running is described by its ARN.
    func waitForServer(_ names: ECSNames, appearingWithin: Duration = .seconds(15), started: String? = nil) async throws -> ECSTask {
        let deadline = ContinuousClock.now + configuration.startTimeout
        let listedBy = ContinuousClock.now + appearingWithin
        var last: ECSTask?
        while true {
            let watched = last?.taskArn ?? started
            if let task = try await serverTask(names) {
                last = task
                if task.isRunning, task.privateAddress != nil { return task }
            } else if let arn = watched, let stopped = try await describe(names, [arn]).first, stopped.isStopping {
                // It stopped while starting: say why.
                throw DockerParallelError(
                    .serverStartFailed, "the server task of '\(names.queue)' stopped: \(await stopReason(stopped, names: names, component: "server"))")
            } else if watched != nil {
                // Listed a moment ago and not stopping: ListTasks left it out; ask again.
            } else if ContinuousClock.now > listedBy {
                throw DockerParallelError(.serverNotRunning, "no server task of '\(names.queue)' runs in the ECS cluster \(clusterName(names))")
            }
            guard ContinuousClock.now < deadline else {
                throw DockerParallelError(
                    .timedOut,
                    "the server task of '\(names.queue)' did not run within \(configuration.startTimeout) (last status \(last?.lastStatus ?? "unknown")); its log is in the CloudWatch Logs group \(names.logGroup)")
            }
            try await Task.sleep(for: pollInterval)
        }
    }

    /// Why a task stopped, in words: the stop code and reason, the container's exit code and
    /// reason, and the end of its log (or where it is).
    func stopReason(_ task: ECSTask, names: ECSNames, component: String) async -> String {
        var parts: [String] = []
        if let code = task.stopCode, !code.isEmpty { parts.append(code) }
        if let reason = task.stoppedReason, !reason.isEmpty { parts.append(reason) }
        for container in task.containers ?? [] {
            if let exit = container.exitCode {
                parts.append(exit == Self.startupFailureStatus
                    ? "its start-up failed (exit status \(exit): a package could not be installed, or a setting is wrong)"
                    : "its container exited with status \(exit)")
            }
            if let reason = container.reason, !reason.isEmpty { parts.append(reason) }
        }
        let id = task.taskArn.split(separator: "/").last.map(String.init) ?? task.taskArn
        let stream = "\(component)/\(component)/\(id)"
        let where_ = "CloudWatch Logs group \(names.logGroup), stream \(stream)"
        if let tail = await logTail(group: names.logGroup, stream: stream), !tail.isEmpty {
            return parts.joined(separator: "; ") + ". Its log (\(where_)) ends:\n" + tail
        }
        parts.append("its log: \(where_)")
        return parts.joined(separator: "; ")
    }

    /// The last lines of a task's log, or `nil` when there is none (yet, or any more).
    func logTail(group: String, stream: String, lines: Int = 20) async -> String? {
        struct Input: Encodable, Sendable {
            var logGroupName: String
            var logStreamName: String
            var limit: Int
            var startFromHead: Bool
        }
        struct Output: Decodable, Sendable {
            struct Event: Decodable, Sendable { var message: String? }
            var events: [Event]?
        }
        guard let answer = try? await logs.json(
            "GetLogEvents", Input(logGroupName: group, logStreamName: stream, limit: lines, startFromHead: false), as: Output.self)
        else { return nil }
        let text = (answer.events ?? []).compactMap(\.message).map { $0.hasSuffix("\n") ? String($0.dropLast()) : $0 }
        return text.isEmpty ? nil : text.joined(separator: "\n")
    }

    /// Why a worker of this task definition failed at start-up (exit status 78), from the
    /// tasks of it that stopped; `nil` when none did. Only this definition's: an earlier
    /// image's failures do not fail a new start.
    func workerStartupFailure(_ names: ECSNames, definition: String) async throws -> String? {
        var token: String?
        var arns: [String] = []
        repeat {
            let page = try await aws {
                try await ecs.json(
                    "ListTasks",
                    ListTasksInput(cluster: clusterName(names), family: names.workerFamily, startedBy: nil, desiredStatus: "STOPPED", nextToken: token, maxResults: 100),
                    as: ListTasksOutput.self)
            }
            arns += page.taskArns ?? []
            token = page.nextToken
        } while token != nil && arns.count < 300
        for task in try await describe(names, arns) where task.taskDefinitionArn == definition {
            if task.containers?.contains(where: { $0.exitCode == Self.startupFailureStatus }) ?? false {
                return "a worker task of '\(names.queue)' failed at start-up: \(await stopReason(task, names: names, component: "worker"))"
            }
        }
        return nil
    }

    /// Starts `count` tasks in batches of at most 10 (RunTask's most), on FARGATE, FARGATE_SPOT
    /// or both; returns their ARNs.
    /// - Throws: `.providerFailed` naming ECS's reasons when a task could not be placed, and the
    ///   account's task quota when that is the reason.
    func runTasks(
        _ names: ECSNames, resources: Resources, definition: String, count: Int, spotShare: Double, tags: [String: String],
        overrides: TaskOverride?, running: (total: Int, spot: Int) = (0, 0)
    ) async throws -> [String] {
        var started: [String] = []
        for run in Self.launchPlan(count: count, spotShare: spotShare, running: running) {
            // On-demand alone uses the FARGATE launch type, which needs no capacity provider on
            // the cluster; a Spot mix names both.
            let usesStrategy = spotShare > 0
            let input = RunTaskInput(
                cluster: resources.cluster, taskDefinition: definition, count: run.count, launchType: usesStrategy ? nil : "FARGATE",
                capacityProviderStrategy: usesStrategy ? [CapacityProviderStrategyItem(capacityProvider: run.provider, weight: 1, base: nil)] : nil,
                networkConfiguration: NetworkConfiguration(awsvpcConfiguration: AwsVpcConfiguration(
                    subnets: resources.subnets, securityGroups: [resources.securityGroup] + configuration.securityGroups,
                    assignPublicIp: configuration.assignsPublicIP ? "ENABLED" : "DISABLED")),
                overrides: overrides, startedBy: ECSNames.startedBy, group: "family:\(Self.family(ofTaskDefinition: definition))",
                tags: names.ecsTags(tags), propagateTags: nil, enableExecuteCommand: nil)
            let answer = try await runTask(input)
            started += (answer.tasks ?? []).map(\.taskArn)
            if let failures = answer.failures, !failures.isEmpty {
                let reasons = Set(failures.map { [$0.reason, $0.detail].compactMap { $0 }.joined(separator: ": ") }).sorted()
                throw DockerParallelError(
                    .providerFailed,
                    "Amazon ECS started \(answer.tasks?.count ?? 0) of \(run.count) \(run.provider) tasks of '\(names.queue)': \(reasons.joined(separator: "; "))\(Self.capacityHint(reasons))")
            }
        }
        return started
    }

    /// The RunTask calls that start `count` tasks: batches of at most 10 (RunTask's most), each
    /// split between FARGATE_SPOT and FARGATE so that the Spot share holds after every batch
    /// (rounded), spot first.
    /// - Parameters:
    ///   - running: The workers that run already, and how many of them on FARGATE_SPOT: the
    ///     share is kept over all of them, so that workers added one at a time still mix.
    static func launchPlan(count: Int, spotShare: Double, running: (total: Int, spot: Int) = (0, 0)) -> [(provider: String, count: Int)] {
        var plan: [(provider: String, count: Int)] = []
        var started = running.total
        var spot = running.spot
        while started < running.total + count {
            let batch = min(10, running.total + count - started)
            let spotWanted = min(batch, max(0, Int((Double(started + batch) * spotShare).rounded()) - spot))
            if spotWanted > 0 { plan.append(("FARGATE_SPOT", spotWanted)) }
            if batch - spotWanted > 0 { plan.append(("FARGATE", batch - spotWanted)) }
            spot += spotWanted
            started += batch
        }
        return plan
    }

    /// RunTask, retried while IAM has not yet spread a new execution role (ECS cannot assume it
    /// for a few seconds after it is made).
    func runTask(_ input: RunTaskInput) async throws -> RunTaskOutput {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            do {
                return try await ecs.json("RunTask", input, as: RunTaskOutput.self)
            } catch let error as AWSServiceError
                where error.code == "ClientException" && error.message.contains("assume") && ContinuousClock.now < deadline {
                try await Task.sleep(for: pollInterval * 6)
            } catch let error as AWSServiceError where error.message.lowercased().contains("limit") && error.message.lowercased().contains("task") {
                throw DockerParallelError(
                    .providerFailed,
                    "Amazon ECS refused more tasks: \(error.message). The account's Fargate quota in \(region) is reached: ask fewer workers, or raise the quota in the Service Quotas console (\"Fargate On-Demand vCPU resource count\", \"Fargate Spot vCPU resource count\").")
            } catch let error as AWSServiceError {
                throw DockerParallelError(.providerFailed, Self.explain(error, region: region))
            }
        }
    }

    static func capacityHint(_ reasons: [String]) -> String {
        let text = reasons.joined(separator: " ").lowercased()
        if text.contains("capacity") { return ". Fargate Spot has no capacity now: lower --spot, or try later." }
        if text.contains("limit") || text.contains("quota") {
            return ". The account's Fargate quota is reached: ask fewer workers, or raise it in the Service Quotas console."
        }
        return ""
    }

    func stopTask(_ names: ECSNames, _ arn: String, reason: String) async throws {
        do {
            try await ecs.jsonData("StopTask", StopTaskInput(cluster: clusterName(names), task: arn, reason: reason))
        } catch let error as AWSServiceError where error.code == "InvalidParameterException" || error.isNotFound {
            // Stopped already, or gone.
        } catch let error as AWSServiceError {
            throw DockerParallelError(.providerFailed, Self.explain(error, region: region))
        }
    }

    /// Waits until the tasks stopped, for their stop timeout and a minute more.
    func waitUntilStopped(_ names: ECSNames, _ arns: [String]) async throws {
        guard !arns.isEmpty else { return }
        let deadline = ContinuousClock.now + configuration.stopTimeout + .seconds(60)
        while true {
            let running = try await describe(names, arns).filter { $0.lastStatus != "STOPPED" }
            if running.isEmpty { return }
            guard ContinuousClock.now < deadline else {
                throw DockerParallelError(
                    .timedOut, "\(running.count) task(s) of '\(names.queue)' did not stop within \(configuration.stopTimeout + .seconds(60))")
            }
            try await Task.sleep(for: pollInterval)
        }
    }

    /// The public IP of a task's network interface, if it has one.
    func publicAddress(of task: ECSTask) async throws -> String? {
        guard let interface = task.eniDetail("networkInterfaceId") else { return nil }
        let answer = try await aws { try await ec2.query("DescribeNetworkInterfaces", ["NetworkInterfaceId.1": interface]) }
        return answer.items("networkInterfaceSet").first?.child("association")?.value("publicIp")
    }
}
