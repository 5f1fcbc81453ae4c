import Foundation

// The shapes of the ECS, CloudWatch Logs and Secrets Manager requests and answers the provider
// uses, as botocore's service models define them (members it does not use are left out; every
// answer member is optional, so that an emulator's sparser answers decode).

/// A tag on an ECS resource.
struct ECSTag: Codable, Sendable, Equatable {
    var key: String
    var value: String
}

/// A `name`/`value` pair (an environment variable).
struct KeyValuePair: Codable, Sendable, Equatable {
    var name: String
    var value: String
}

/// An environment variable whose value ECS reads from Secrets Manager when the task starts.
struct ContainerSecret: Codable, Sendable, Equatable {
    var name: String
    var valueFrom: String
}

struct PortMapping: Codable, Sendable, Equatable {
    var containerPort: Int
    var hostPort: Int?
    var `protocol`: String?
}

struct LogConfiguration: Codable, Sendable, Equatable {
    var logDriver: String
    var options: [String: String]?
}

struct LinuxParameters: Codable, Sendable, Equatable {
    var initProcessEnabled: Bool?
}

struct ContainerDefinition: Codable, Sendable, Equatable {
    var name: String
    var image: String
    var essential: Bool?
    var command: [String]?
    var environment: [KeyValuePair]?
    var secrets: [ContainerSecret]?
    var portMappings: [PortMapping]?
    var logConfiguration: LogConfiguration?
    var stopTimeout: Int?
    var linuxParameters: LinuxParameters?
}

struct RegisterTaskDefinitionInput: Encodable, Sendable {
    var family: String
    var executionRoleArn: String?
    var taskRoleArn: String?
    var networkMode: String
    var containerDefinitions: [ContainerDefinition]
    var requiresCompatibilities: [String]
    var cpu: String
    var memory: String
    var tags: [ECSTag]
}

struct TaskDefinition: Decodable, Sendable {
    var taskDefinitionArn: String?
    var family: String?
    var revision: Int?
    var containerDefinitions: [ContainerDefinition]?
    var cpu: String?
    var memory: String?
}

struct TaskDefinitionOutput: Decodable, Sendable {
    var taskDefinition: TaskDefinition?
    var tags: [ECSTag]?
}

struct AwsVpcConfiguration: Codable, Sendable, Equatable {
    var subnets: [String]
    var securityGroups: [String]?
    var assignPublicIp: String?
}

struct NetworkConfiguration: Codable, Sendable, Equatable {
    var awsvpcConfiguration: AwsVpcConfiguration
}

struct CapacityProviderStrategyItem: Codable, Sendable, Equatable {
    var capacityProvider: String
    var weight: Int?
    var base: Int?
}

struct ContainerOverride: Codable, Sendable, Equatable {
    var name: String
    var environment: [KeyValuePair]?
}

struct TaskOverride: Codable, Sendable, Equatable {
    var containerOverrides: [ContainerOverride]?
}

struct RunTaskInput: Encodable, Sendable {
    var cluster: String
    var taskDefinition: String
    var count: Int
    var launchType: String?
    var capacityProviderStrategy: [CapacityProviderStrategyItem]?
    var networkConfiguration: NetworkConfiguration?
    var overrides: TaskOverride?
    var startedBy: String
    var group: String?
    var tags: [ECSTag]
    var propagateTags: String?
    var enableExecuteCommand: Bool?
}

/// One ENI detail (`privateIPv4Address`, `networkInterfaceId`).
struct AttachmentDetail: Decodable, Sendable {
    var name: String?
    var value: String?
}

struct Attachment: Decodable, Sendable {
    var type: String?
    var status: String?
    var details: [AttachmentDetail]?
}

struct TaskContainer: Decodable, Sendable {
    struct NetworkInterface: Decodable, Sendable {
        var privateIpv4Address: String?
    }

    var name: String?
    var lastStatus: String?
    var exitCode: Int?
    var reason: String?
    var networkInterfaces: [NetworkInterface]?
}

/// A task as DescribeTasks reports it.
struct ECSTask: Decodable, Sendable {
    var taskArn: String
    var taskDefinitionArn: String?
    var lastStatus: String?
    var desiredStatus: String?
    var startedBy: String?
    var group: String?
    var createdAt: Double?
    var capacityProviderName: String?
    var launchType: String?
    var stopCode: String?
    var stoppedReason: String?
    var containers: [TaskContainer]?
    var attachments: [Attachment]?
    var tags: [ECSTag]?

    func tag(_ key: String) -> String? { tags?.first { $0.key == key }?.value }

    /// Whether it stopped or will (its desired status is STOPPED).
    var isStopping: Bool { desiredStatus == "STOPPED" || lastStatus == "STOPPED" || lastStatus == "DEPROVISIONING" || lastStatus == "STOPPING" || lastStatus == "DEACTIVATING" }

    /// Whether its container runs.
    var isRunning: Bool { lastStatus == "RUNNING" && desiredStatus != "STOPPED" }

    /// The ENI's detail, such as `privateIPv4Address` or `networkInterfaceId`.
    func eniDetail(_ name: String) -> String? {
        for attachment in attachments ?? [] where attachment.type == "ElasticNetworkInterface" || attachment.type == nil {
            if let value = attachment.details?.first(where: { $0.name == name })?.value, !value.isEmpty { return value }
        }
        return nil
    }

    /// The task's private address.
    var privateAddress: String? {
        eniDetail("privateIPv4Address") ?? containers?.lazy.compactMap { $0.networkInterfaces?.first?.privateIpv4Address }.first
    }
}

struct Failure: Decodable, Sendable {
    var arn: String?
    var reason: String?
    var detail: String?
}

struct RunTaskOutput: Decodable, Sendable {
    var tasks: [ECSTask]?
    var failures: [Failure]?
}

struct DescribeTasksInput: Encodable, Sendable {
    var cluster: String
    var tasks: [String]
    var include: [String]
}

struct DescribeTasksOutput: Decodable, Sendable {
    var tasks: [ECSTask]?
    var failures: [Failure]?
}

struct ListTasksInput: Encodable, Sendable {
    var cluster: String
    var family: String?
    var startedBy: String?
    var desiredStatus: String?
    var nextToken: String?
    var maxResults: Int?
}

struct ListTasksOutput: Decodable, Sendable {
    var taskArns: [String]?
    var nextToken: String?
}

struct StopTaskInput: Encodable, Sendable {
    var cluster: String
    var task: String
    var reason: String
}

struct ECSCluster: Decodable, Sendable {
    var clusterArn: String?
    var clusterName: String?
    var status: String?
    var tags: [ECSTag]?
    var capacityProviders: [String]?
    var runningTasksCount: Int?
    var pendingTasksCount: Int?
}

struct CreateClusterInput: Encodable, Sendable {
    var clusterName: String
    var tags: [ECSTag]
    var capacityProviders: [String]
    var defaultCapacityProviderStrategy: [CapacityProviderStrategyItem]
}

struct ClusterOutput: Decodable, Sendable {
    var cluster: ECSCluster?
}

struct DescribeClustersInput: Encodable, Sendable {
    var clusters: [String]
    var include: [String]
}

struct DescribeClustersOutput: Decodable, Sendable {
    var clusters: [ECSCluster]?
    var failures: [Failure]?
}

struct ClusterNameInput: Encodable, Sendable {
    var cluster: String
}

struct ListTaskDefinitionsInput: Encodable, Sendable {
    var familyPrefix: String
    var status: String
    var nextToken: String?
}

struct ListTaskDefinitionsOutput: Decodable, Sendable {
    var taskDefinitionArns: [String]?
    var nextToken: String?
}

struct TaskDefinitionInput: Encodable, Sendable {
    var taskDefinition: String
    var include: [String]?
}

struct DeleteTaskDefinitionsInput: Encodable, Sendable {
    var taskDefinitions: [String]
}

// MARK: Secrets Manager

struct SecretTag: Codable, Sendable, Equatable {
    var Key: String
    var Value: String
}

struct CreateSecretInput: Encodable, Sendable {
    var Name: String
    var ClientRequestToken: String
    var Description: String
    var SecretString: String
    var Tags: [SecretTag]
}

struct SecretOutput: Decodable, Sendable {
    var ARN: String?
    /// When the secret was scheduled for deletion (epoch seconds); `nil` for a live one.
    var DeletedDate: Double?
    var Name: String?
    var SecretString: String?
    var Tags: [SecretTag]?
}

struct SecretIDInput: Encodable, Sendable {
    var SecretId: String
}

struct DeleteSecretInput: Encodable, Sendable {
    var SecretId: String
    var ForceDeleteWithoutRecovery: Bool
}

struct ListSecretsInput: Encodable, Sendable {
    struct Filter: Encodable, Sendable {
        var Key: String
        var Values: [String]
    }

    var Filters: [Filter]
    var NextToken: String?
    var MaxResults: Int?
}

struct ListSecretsOutput: Decodable, Sendable {
    var SecretList: [SecretOutput]?
    var NextToken: String?
}

// MARK: CloudWatch Logs

struct LogGroupInput: Encodable, Sendable {
    var logGroupName: String
    var tags: [String: String]?
}

struct DeleteLogGroupInput: Encodable, Sendable {
    var logGroupName: String
}

struct DescribeLogGroupsInput: Encodable, Sendable {
    var logGroupNamePrefix: String
}

struct DescribeLogGroupsOutput: Decodable, Sendable {
    struct Group: Decodable, Sendable {
        var logGroupName: String?
        var arn: String?
    }

    var logGroups: [Group]?
}

struct ListTagsLogGroupInput: Encodable, Sendable {
    var logGroupName: String
}

struct ListTagsLogGroupOutput: Decodable, Sendable {
    var tags: [String: String]?
}
