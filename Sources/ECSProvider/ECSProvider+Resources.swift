import DockerEngineProvider
import DockerParallelCore
import Foundation
import Logging
import ProviderKit

extension ECSProvider {
    /// The environment variables that hold secrets, with the secret's JSON key for each.
    static let secretItems = [
        (EnvironmentKey.password, EnvironmentKey.passwordFile, "password"),
        (EnvironmentKey.tlsPrivateKey, EnvironmentKey.tlsPrivateKeyFile, "tls-key"),
        (EnvironmentKey.tlsCertificateAuthorityKey, EnvironmentKey.tlsCertificateAuthorityKeyFile, "tls-ca-key"),
    ]

    /// The ARN partition of the region: `aws`, `aws-cn` or `aws-us-gov`.
    var partition: String {
        if region.hasPrefix("cn-") { return "aws-cn" }
        if region.hasPrefix("us-gov-") { return "aws-us-gov" }
        return "aws"
    }

    /// The managed policy that lets ECS pull images and write logs for a task.
    var executionPolicyARN: String { "arn:\(partition):iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy" }

    /// Finds or makes what the queue's tasks run in, once per process.
    func prepare(_ names: ECSNames, port: Int, logger: Logger) async throws -> Resources {
        if let resources = prepared[names.queue] {
            try await openPort(port, in: resources.securityGroup, vpc: resources.vpc)
            return resources
        }
        let cluster = try await ensureCluster(names, logger: logger)
        let (vpc, subnets) = try await network()
        let group = try await ensureSecurityGroup(names, vpc: vpc)
        try await openPort(port, in: group, vpc: vpc)
        let role = try await ensureExecutionRole(names, logger: logger)
        let logGroup = try await ensureLogGroup(names)
        let resources = Resources(
            cluster: cluster, subnets: subnets, vpc: vpc, securityGroup: group, executionRoleARN: role, logGroup: logGroup)
        prepared[names.queue] = resources
        return resources
    }

    // MARK: ECS cluster

    func ensureCluster(_ names: ECSNames, logger: Logger) async throws -> String {
        let name = clusterName(names)
        let found = try await aws {
            try await ecs.json("DescribeClusters", DescribeClustersInput(clusters: [name], include: ["TAGS"]), as: DescribeClustersOutput.self)
        }
        if let cluster = found.clusters?.first(where: { $0.status == "ACTIVE" || $0.status == "PROVISIONING" }) {
            // On-demand tasks use the FARGATE launch type; a Spot share needs both capacity providers.
            if configuration.spotShare > 0, let providers = cluster.capacityProviders,
               !providers.contains("FARGATE_SPOT") || !providers.contains("FARGATE") {
                throw DockerParallelError(
                    .invalidArgument,
                    "the ECS cluster '\(name)' lacks the FARGATE and FARGATE_SPOT capacity providers that --spot needs: add them with `aws ecs put-cluster-capacity-providers --cluster \(name) --capacity-providers FARGATE FARGATE_SPOT --default-capacity-provider-strategy capacityProvider=FARGATE,weight=1`, or run without --spot")
            }
            if cluster.status == "PROVISIONING" { try await waitUntilActive(name) }
            return name
        }
        if let given = configuration.cluster {
            throw DockerParallelError(
                .invalidArgument, "the ECS cluster '\(given)' is not in \(region): create it, or leave --ecs-cluster out to have one made")
        }
        _ = try await aws {
            try await ecs.json(
                "CreateCluster",
                CreateClusterInput(
                    clusterName: name, tags: names.ecsTags(), capacityProviders: ["FARGATE", "FARGATE_SPOT"],
                    defaultCapacityProviderStrategy: [.init(capacityProvider: "FARGATE", weight: 1, base: nil)]),
                as: ClusterOutput.self)
        }
        logger.info("Made the ECS cluster \(name) in \(region)")
        try await waitUntilActive(name)
        return name
    }

    /// Waits until a new cluster is ACTIVE (it may be PROVISIONING for a moment after CreateCluster).
    func waitUntilActive(_ name: String) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            let found = try await aws {
                try await ecs.json("DescribeClusters", DescribeClustersInput(clusters: [name], include: []), as: DescribeClustersOutput.self)
            }
            if found.clusters?.contains(where: { $0.status == "ACTIVE" }) ?? false { return }
            guard ContinuousClock.now < deadline else {
                throw DockerParallelError(.timedOut, "the ECS cluster '\(name)' did not become ACTIVE within a minute")
            }
            try await Task.sleep(for: pollInterval)
        }
    }

    // MARK: Network

    /// The configured subnets and their VPC, or the default VPC and its default subnets.
    func network() async throws -> (vpc: String, subnets: [String]) {
        if !configuration.subnets.isEmpty {
            let answer = try await aws { try await ec2.query("DescribeSubnets", Self.list("SubnetId", configuration.subnets)) }
            let found = answer.items("subnetSet")
            guard let vpc = found.first?.value("vpcId"), found.count == configuration.subnets.count else {
                throw DockerParallelError(.invalidArgument, "the subnets \(configuration.subnets.joined(separator: ", ")) are not all in \(region)")
            }
            return (vpc, configuration.subnets)
        }
        let vpcs = try await aws { try await ec2.query("DescribeVpcs", Self.filters(["is-default": "true"])) }
        guard let vpc = vpcs.items("vpcSet").first?.value("vpcId") else {
            throw DockerParallelError(
                .invalidArgument, "\(region) has no default VPC: name the tasks' subnets with --subnet (repeatable)")
        }
        let subnets = try await aws {
            try await ec2.query("DescribeSubnets", Self.filters(["vpc-id": vpc, "default-for-az": "true"]))
        }.items("subnetSet").compactMap { $0.value("subnetId") }
        guard !subnets.isEmpty else {
            throw DockerParallelError(.invalidArgument, "the default VPC \(vpc) has no default subnets: name the tasks' subnets with --subnet")
        }
        return (vpc, subnets.sorted())
    }

    /// The cluster's security group, made when missing.
    func ensureSecurityGroup(_ names: ECSNames, vpc: String) async throws -> String {
        if let group = try await securityGroup(names, vpc: vpc) { return group }
        var parameters = [
            "GroupName": names.securityGroup, "GroupDescription": Self.securityGroupDescription(names.queue), "VpcId": vpc,
            "TagSpecification.1.ResourceType": "security-group",
        ]
        for (index, tag) in names.tags.sorted(by: { $0.key < $1.key }).enumerated() {
            parameters["TagSpecification.1.Tag.\(index + 1).Key"] = tag.key
            parameters["TagSpecification.1.Tag.\(index + 1).Value"] = tag.value
        }
        do {
            let answer = try await ec2.query("CreateSecurityGroup", parameters)
            guard let id = answer.first("groupId")?.text else {
                throw DockerParallelError(.providerFailed, "Amazon EC2 made the security group \(names.securityGroup) but gave no id")
            }
            return id
        } catch let error as AWSServiceError where error.code == "InvalidGroup.Duplicate" {
            // Made meanwhile by another process.
            if let group = try await securityGroup(names, vpc: vpc) { return group }
            throw DockerParallelError(.providerFailed, Self.explain(error, region: region))
        } catch let error as AWSServiceError {
            throw DockerParallelError(.providerFailed, Self.explain(error, region: region))
        }
    }

    func securityGroup(_ names: ECSNames, vpc: String? = nil) async throws -> String? {
        var filters = ["group-name": names.securityGroup, "tag:\(ECSNames.queueTag)": names.queue]
        if let vpc { filters["vpc-id"] = vpc }
        let answer = try await aws { try await ec2.query("DescribeSecurityGroups", Self.filters(filters)) }
        return answer.items("securityGroupInfo").first?.value("groupId")
    }

    /// The security group's description: EC2 takes only `a-zA-Z0-9. _-:/()#,@[]+=&;{}!$*` there.
    static func securityGroupDescription(_ queue: String) -> String {
        "DockerParallel cluster \(queue) - the server port"
    }

    /// Lets the group's members (the workers) reach the server's port, and the client: from
    /// anywhere in the VPC when it runs there (or the tasks have no public IP), else from
    /// ``Configuration/clientCIDR``. One call a rule, so that a rule that exists already (from
    /// an earlier start) does not keep a new one out.
    func openPort(_ port: Int, in group: String, vpc: String) async throws {
        let clientRange: String
        if configuration.serverClientSameLAN || !configuration.assignsPublicIP {
            clientRange = try await vpcCIDR(vpc)
        } else {
            clientRange = configuration.clientCIDR
        }
        for rule in Self.ingressRules(port: port, group: group, clientRange: clientRange) {
            do {
                try await ec2.query("AuthorizeSecurityGroupIngress", rule)
            } catch let error as AWSServiceError where error.code == "InvalidPermission.Duplicate" {
                // Opened by an earlier start.
            } catch let error as AWSServiceError {
                throw DockerParallelError(.providerFailed, Self.explain(error, region: region))
            }
        }
    }

    /// The two ingress rules of the server's port: from the group's members, and from the client's range.
    static func ingressRules(port: Int, group: String, clientRange: String) -> [[String: String]] {
        let base = [
            "GroupId": group, "IpPermissions.1.IpProtocol": "tcp", "IpPermissions.1.FromPort": String(port),
            "IpPermissions.1.ToPort": String(port),
        ]
        return [
            base.merging(["IpPermissions.1.Groups.1.GroupId": group]) { $1 },
            base.merging([
                "IpPermissions.1.IpRanges.1.CidrIp": clientRange, "IpPermissions.1.IpRanges.1.Description": "DockerParallel clients",
            ]) { $1 },
        ]
    }

    /// The VPC's IPv4 range.
    func vpcCIDR(_ vpc: String) async throws -> String {
        let answer = try await aws { try await ec2.query("DescribeVpcs", ["VpcId.1": vpc]) }
        guard let range = answer.items("vpcSet").first?.value("cidrBlock"), !range.isEmpty else {
            throw DockerParallelError(.providerFailed, "Amazon EC2 gave no address range for the VPC \(vpc)")
        }
        return range
    }

    // MARK: IAM

    /// The configured execution role's ARN, or the cluster's own, made when missing.
    func ensureExecutionRole(_ names: ECSNames, logger: Logger) async throws -> String {
        if let role = configuration.executionRole {
            if role.hasPrefix("arn:") { return role }
            return try await roleARN(role) ?? {
                throw DockerParallelError(.invalidArgument, "the IAM role '\(role)' does not exist: create it, or leave --execution-role out")
            }()
        }
        if let arn = try await roleARN(names.executionRole) {
            // Ours: its policies again (idempotent), in case the process that made it stopped
            // before attaching them, or is attaching them now.
            if try await roleIsOurs(names) { try await attachExecutionPolicies(names) }
            return arn
        }
        let trust = #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#
        var parameters = [
            "RoleName": names.executionRole, "AssumeRolePolicyDocument": trust,
            "Description": "Lets ECS start the tasks of the DockerParallel cluster \(names.queue)",
        ]
        for (index, tag) in names.tags.sorted(by: { $0.key < $1.key }).enumerated() {
            parameters["Tags.member.\(index + 1).Key"] = tag.key
            parameters["Tags.member.\(index + 1).Value"] = tag.value
        }
        let arn: String
        do {
            let answer = try await iam.query("CreateRole", parameters)
            guard let made = answer.first("Arn")?.text else {
                throw DockerParallelError(.providerFailed, "AWS IAM made the role \(names.executionRole) but gave no ARN")
            }
            arn = made
            logger.info("Made the task execution role \(names.executionRole)")
        } catch let error as AWSServiceError where error.code == "EntityAlreadyExists" {
            arn = try await roleARN(names.executionRole) ?? missingRole(names)
        } catch let error as AWSServiceError {
            throw DockerParallelError(.providerFailed, Self.explain(error, region: region))
        }
        try await attachExecutionPolicies(names)
        return arn
    }

    /// Lets the role pull images, write logs, and read the cluster's own secret: its ARN ends
    /// in `-` and six random characters, so `a` cannot read `a-b`'s.
    func attachExecutionPolicies(_ names: ECSNames) async throws {
        let readSecret = #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"arn:\#(partition):secretsmanager:*:*:secret:\#(names.secret)-??????"}]}"#
        try await aws {
            try await iam.query("AttachRolePolicy", ["RoleName": names.executionRole, "PolicyArn": executionPolicyARN])
            try await iam.query(
                "PutRolePolicy", ["RoleName": names.executionRole, "PolicyName": "read-cluster-secret", "PolicyDocument": readSecret])
        }
    }

    private func missingRole(_ names: ECSNames) throws -> String {
        throw DockerParallelError(.providerFailed, "the IAM role \(names.executionRole) exists and cannot be read")
    }

    func roleARN(_ name: String) async throws -> String? {
        do {
            return try await iam.query("GetRole", ["RoleName": name]).first("Arn")?.text
        } catch let error as AWSServiceError where error.code == "NoSuchEntity" {
            return nil
        } catch let error as AWSServiceError {
            throw DockerParallelError(.providerFailed, Self.explain(error, region: region))
        }
    }

    /// Whether the role carries this queue's tag: made by this provider for it.
    func roleIsOurs(_ names: ECSNames) async throws -> Bool {
        do {
            let tags = try await iam.query("ListRoleTags", ["RoleName": names.executionRole]).items("Tags")
            return tags.contains { $0.value("Key") == ECSNames.queueTag && $0.value("Value") == names.queue }
        } catch let error as AWSServiceError where error.code == "NoSuchEntity" {
            return false
        }
    }

    // MARK: CloudWatch Logs

    func ensureLogGroup(_ names: ECSNames) async throws -> String {
        do {
            try await logs.jsonData("CreateLogGroup", LogGroupInput(logGroupName: names.logGroup, tags: names.tags))
        } catch let error as AWSServiceError where error.code == "ResourceAlreadyExistsException" {
            // Made by an earlier start.
        } catch let error as AWSServiceError {
            throw DockerParallelError(.providerFailed, Self.explain(error, region: region))
        }
        return names.logGroup
    }

    // MARK: Secrets Manager

    /// The secret's JSON: the password, the TLS keys, and the static data without them.
    struct StoredSecret: Codable {
        var password: String?
        var tlsKey: String?
        var tlsCAKey: String?
        var staticData: String

        enum CodingKeys: String, CodingKey {
            case password
            case tlsKey = "tls-key"
            case tlsCAKey = "tls-ca-key"
            case staticData = "static-data"
        }
    }

    /// What the cluster's secret holds for the containers: its ARN, and which of
    /// ``secretItems``' keys it has (a cluster with its own certificate has no CA key, a
    /// plain-text one no TLS key: ECS fails a task that asks for a missing key).
    struct StoredSecretReference: Sendable {
        var arn: String
        var keys: [String]
    }

    /// The secret's value for a server: the password, the TLS keys found in `environment`
    /// (moved out of it), and the static data without them.
    func secretValue(environment: inout [String: String], staticData: StaticData) throws -> (text: String, keys: [String]) {
        var withoutSecrets = staticData
        withoutSecrets.configuration.serverPassword = ServerPassword("")
        withoutSecrets.configuration.transportSecurity.serverPrivateKey = nil
        withoutSecrets.configuration.transportSecurity.certificateAuthorityKey = nil
        let stored = StoredSecret(
            password: environment.removeValue(forKey: EnvironmentKey.password) ?? staticData.configuration.serverPassword.value,
            tlsKey: environment.removeValue(forKey: EnvironmentKey.tlsPrivateKey),
            tlsCAKey: environment.removeValue(forKey: EnvironmentKey.tlsCertificateAuthorityKey),
            staticData: try JSONEncoder().encode(withoutSecrets).base64EncodedString())
        var keys = ["password"]
        if stored.tlsKey != nil { keys.append("tls-key") }
        if stored.tlsCAKey != nil { keys.append("tls-ca-key") }
        return (String(decoding: try JSONEncoder().encode(stored), as: UTF8.self), keys)
    }

    /// Makes the cluster's secret. It is the cluster's lock: `nil` when it exists already (another
    /// process is starting the same cluster). A secret of the same name still being deleted (a
    /// `down` a moment ago) is waited for.
    func createSecret(_ names: ECSNames, text: String) async throws -> String? {
        let deadline = ContinuousClock.now + .seconds(120)
        while true {
            do {
                let made = try await secrets.json(
                    "CreateSecret",
                    CreateSecretInput(
                        Name: names.secret, ClientRequestToken: UUID().uuidString,
                        Description: "DockerParallel cluster \(names.queue): its password, TLS keys and settings",
                        SecretString: text, Tags: names.tags.sorted { $0.key < $1.key }.map { SecretTag(Key: $0.key, Value: $0.value) }),
                    as: SecretOutput.self)
                if let arn = made.ARN { return arn }
                return try await secretARN(names)
            } catch let error as AWSServiceError where error.code == "ResourceExistsException" {
                return nil
            } catch let error as AWSServiceError
                where error.code == "InvalidRequestException" && error.message.lowercased().contains("deletion") && ContinuousClock.now < deadline {
                try await Task.sleep(for: max(pollInterval, .seconds(1)))
            } catch let error as AWSServiceError {
                throw DockerParallelError(.providerFailed, Self.explain(error, region: region))
            }
        }
    }

    /// Gives the existing secret a new value (a server restarted with its stored settings).
    func updateSecret(_ names: ECSNames, text: String) async throws -> String {
        struct Put: Encodable, Sendable {
            var SecretId: String
            var ClientRequestToken: String
            var SecretString: String
        }
        try await aws {
            try await secrets.jsonData("PutSecretValue", Put(SecretId: names.secret, ClientRequestToken: UUID().uuidString, SecretString: text))
        }
        guard let arn = try await secretARN(names) else {
            throw DockerParallelError(.providerFailed, "the secret \(names.secret) was written and cannot be found")
        }
        return arn
    }

    /// The secret's ARN; `nil` when there is none, or it is being deleted.
    func secretARN(_ names: ECSNames) async throws -> String? {
        do {
            let secret = try await secrets.json("DescribeSecret", SecretIDInput(SecretId: names.secret), as: SecretOutput.self)
            return secret.DeletedDate == nil ? secret.ARN : nil
        } catch let error as AWSServiceError where error.isNotFound {
            return nil
        } catch let error as AWSServiceError {
            throw DockerParallelError(.providerFailed, Self.explain(error, region: region))
        }
    }

    /// The keys the cluster's secret holds, read back (for workers started by another process).
    func secretKeys(_ names: ECSNames) async throws -> [String] {
        guard let value = try? await secrets.json("GetSecretValue", SecretIDInput(SecretId: names.secret), as: SecretOutput.self),
              let text = value.SecretString, let stored = try? JSONDecoder().decode(StoredSecret.self, from: Data(text.utf8))
        else { return ["password"] }
        return ["password"] + (stored.tlsKey != nil ? ["tls-key"] : []) + (stored.tlsCAKey != nil ? ["tls-ca-key"] : [])
    }

    func readSecret(_ names: ECSNames) async throws -> StaticData? {
        let value: SecretOutput
        do {
            value = try await secrets.json("GetSecretValue", SecretIDInput(SecretId: names.secret), as: SecretOutput.self)
        } catch let error as AWSServiceError where error.isNotFound || error.code == "InvalidRequestException" {
            // Missing, or scheduled for deletion.
            return nil
        } catch let error as AWSServiceError {
            throw DockerParallelError(.providerFailed, Self.explain(error, region: region))
        }
        guard let text = value.SecretString, let stored = try? JSONDecoder().decode(StoredSecret.self, from: Data(text.utf8)),
              let data = Data(base64Encoded: stored.staticData)
        else {
            throw DockerParallelError(
                .invalidState,
                "the secret \(names.secret) is not DockerParallel's: remove it with `dockerparallel down --provider ecs --name \(names.queue)`")
        }
        var staticData = try JSONDecoder().decode(StaticData.self, from: data)
        if let password = stored.password { staticData.configuration.serverPassword = ServerPassword(password) }
        if let key = stored.tlsKey { staticData.configuration.transportSecurity.serverPrivateKey = ServerPassword(key) }
        if let key = stored.tlsCAKey { staticData.configuration.transportSecurity.certificateAuthorityKey = ServerPassword(key) }
        return staticData
    }

    func deleteSecret(_ names: ECSNames) async throws {
        do {
            try await secrets.jsonData("DeleteSecret", DeleteSecretInput(SecretId: names.secret, ForceDeleteWithoutRecovery: true))
        } catch let error as AWSServiceError where error.isNotFound {
            // Deleted already.
        } catch let error as AWSServiceError {
            throw DockerParallelError(.providerFailed, Self.explain(error, region: region))
        }
    }

    // MARK: Task definitions

    /// Registers a task definition of one container, its secrets read from the cluster's secret.
    func registerTaskDefinition(
        family: String, names: ECSNames, resources: Resources, container: any WorkerContainer, environment: [String: String],
        secretARN: String, keys: [String], size: FargateSize, component: String, port: Int?
    ) async throws -> String {
        let environment = DockerEngineProvider.startupEnvironment(container, environment)
        let secretNames = Dictionary(uniqueKeysWithValues: Self.secretItems.map { ($0.2, $0.0) })
        let definition = ContainerDefinition(
            name: component, image: container.image, essential: true, command: nil,
            environment: environment.sorted { $0.key < $1.key }.map { KeyValuePair(name: $0.key, value: $0.value) },
            secrets: keys.map { ContainerSecret(name: secretNames[$0] ?? $0, valueFrom: "\(secretARN):\($0)::") },
            portMappings: port.map { [PortMapping(containerPort: $0, hostPort: $0, protocol: "tcp")] },
            logConfiguration: LogConfiguration(
                logDriver: "awslogs",
                options: ["awslogs-group": resources.logGroup, "awslogs-region": region, "awslogs-stream-prefix": component]),
            stopTimeout: Int(configuration.stopTimeout.components.seconds),
            linuxParameters: LinuxParameters(initProcessEnabled: true))
        let input = RegisterTaskDefinitionInput(
            family: family, executionRoleArn: resources.executionRoleARN, taskRoleArn: configuration.taskRole, networkMode: "awsvpc",
            containerDefinitions: [definition], requiresCompatibilities: ["FARGATE"], cpu: String(size.cpu), memory: String(size.memory),
            tags: names.ecsTags())
        let answer = try await aws { try await ecs.json("RegisterTaskDefinition", input, as: TaskDefinitionOutput.self) }
        guard let arn = answer.taskDefinition?.taskDefinitionArn else {
            throw DockerParallelError(.providerFailed, "Amazon ECS registered the task definition \(family) but gave no ARN")
        }
        return arn
    }

    /// The workers' task definition: registered once per process and per what it holds.
    func workerDefinition(
        _ names: ECSNames, resources: Resources, container: any WorkerContainer, environment: [String: String], secretARN: String,
        hardware: Hardware
    ) async throws -> String {
        let size = try FargateSize(hardware)
        let key = [container.image, "\(size)", secretARN, environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n")]
            .joined(separator: "\u{0}")
        if let known = workerDefinitions[names.queue], known.key == key { return known.arn }
        let arn = try await registerTaskDefinition(
            family: names.workerFamily, names: names, resources: resources, container: container, environment: environment,
            secretARN: secretARN, keys: ["password"], size: size, component: "worker", port: nil)
        workerDefinitions[names.queue] = (key, arn)
        return arn
    }

    // MARK: Deep cleanup

    /// Deletes the task definitions, the security group, the log group, the execution role and
    /// the ECS cluster, each only when it carries this queue's tag (made by this provider).
    func deleteResources(_ names: ECSNames) async throws {
        for family in [names.serverFamily, names.workerFamily] {
            var arns: [String] = []
            for status in ["ACTIVE", "INACTIVE"] {
                var token: String?
                repeat {
                    let page = try await aws {
                        try await ecs.json(
                            "ListTaskDefinitions", ListTaskDefinitionsInput(familyPrefix: family, status: status, nextToken: token),
                            as: ListTaskDefinitionsOutput.self)
                    }
                    arns += (page.taskDefinitionArns ?? []).filter { Self.family(ofTaskDefinition: $0) == family }
                    token = page.nextToken
                } while token != nil
            }
            for arn in arns {
                do {
                    try await ecs.jsonData("DeregisterTaskDefinition", TaskDefinitionInput(taskDefinition: arn, include: nil))
                } catch let error as AWSServiceError where error.code == "ClientException" || error.code == "InvalidParameterException" {
                    // Inactive already.
                }
            }
            for batch in stride(from: 0, to: arns.count, by: 10).map({ Array(arns[$0..<min($0 + 10, arns.count)]) }) {
                do {
                    try await ecs.jsonData("DeleteTaskDefinitions", DeleteTaskDefinitionsInput(taskDefinitions: batch))
                } catch let error as AWSServiceError where ["UnknownOperationException", "InvalidAction", "ClientException"].contains(error.code) {
                    // An older API (or emulator) keeps inactive revisions; they cost nothing.
                }
            }
        }
        try await deleteSecurityGroup(names)
        if try await logGroupIsOurs(names) {
            try await aws { try await logs.jsonData("DeleteLogGroup", DeleteLogGroupInput(logGroupName: names.logGroup)) }
        }
        if configuration.executionRole == nil, try await roleIsOurs(names) {
            try await aws {
                do {
                    try await iam.query("DetachRolePolicy", ["RoleName": names.executionRole, "PolicyArn": executionPolicyARN])
                } catch let error as AWSServiceError where error.code == "NoSuchEntity" {}
                do {
                    try await iam.query("DeleteRolePolicy", ["RoleName": names.executionRole, "PolicyName": "read-cluster-secret"])
                } catch let error as AWSServiceError where error.code == "NoSuchEntity" {}
                try await iam.query("DeleteRole", ["RoleName": names.executionRole])
            }
        }
        if configuration.cluster == nil {
            let found = try await aws {
                try await ecs.json(
                    "DescribeClusters", DescribeClustersInput(clusters: [names.cluster], include: ["TAGS"]), as: DescribeClustersOutput.self)
            }
            if let cluster = found.clusters?.first(where: { $0.status == "ACTIVE" }),
               cluster.tags?.contains(where: { $0.key == ECSNames.queueTag && $0.value == names.queue }) ?? false {
                try await aws { try await ecs.jsonData("DeleteCluster", ClusterNameInput(cluster: names.cluster)) }
            }
        }
    }

    /// Deletes the cluster's security group, waiting while stopped tasks' network interfaces
    /// still hold it (AWS releases them a little after the task stops).
    func deleteSecurityGroup(_ names: ECSNames) async throws {
        guard let group = try await securityGroup(names) else { return }
        let deadline = ContinuousClock.now + .seconds(300)
        while true {
            do {
                try await ec2.query("DeleteSecurityGroup", ["GroupId": group])
                return
            } catch let error as AWSServiceError where error.code == "DependencyViolation" && ContinuousClock.now < deadline {
                try await Task.sleep(for: .seconds(5))
            } catch let error as AWSServiceError where error.code == "InvalidGroup.NotFound" {
                return
            } catch let error as AWSServiceError {
                throw DockerParallelError(.providerFailed, Self.explain(error, region: region))
            }
        }
    }

    func logGroupIsOurs(_ names: ECSNames) async throws -> Bool {
        do {
            let tags = try await logs.json("ListTagsLogGroup", ListTagsLogGroupInput(logGroupName: names.logGroup), as: ListTagsLogGroupOutput.self)
            return tags.tags?[ECSNames.queueTag] == names.queue
        } catch let error as AWSServiceError where error.isNotFound {
            return false
        }
    }

    /// `family` of `arn:aws:ecs:region:account:task-definition/family:revision`.
    static func family(ofTaskDefinition arn: String) -> String {
        let last = arn.split(separator: "/").last.map(String.init) ?? arn
        return last.split(separator: ":").first.map(String.init) ?? last
    }

    // MARK: Query parameters

    /// `Filter.N.Name`/`Filter.N.Value.1` pairs, sorted by name.
    static func filters(_ filters: [String: String]) -> [String: String] {
        var parameters: [String: String] = [:]
        for (index, filter) in filters.sorted(by: { $0.key < $1.key }).enumerated() {
            parameters["Filter.\(index + 1).Name"] = filter.key
            parameters["Filter.\(index + 1).Value.1"] = filter.value
        }
        return parameters
    }

    /// `Name.N` for a list.
    static func list(_ name: String, _ values: [String]) -> [String: String] {
        Dictionary(uniqueKeysWithValues: values.enumerated().map { ("\(name).\($0.offset + 1)", $0.element) })
    }
}
