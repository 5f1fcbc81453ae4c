import Foundation

/// Which AWS region to use, as the AWS CLI and SDKs choose it.
package enum AWSRegion {
    /// The region: `AWS_REGION`, else `AWS_DEFAULT_REGION`, else the profile's `region`, else `nil`.
    /// - Parameters:
    ///   - environment: The process's environment.
    ///   - profile: The selected profile of the shared files, if any.
    package static func resolve(environment: [String: String], profile: AWSProfile?) -> String? {
        for variable in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
            if let region = environment[variable]?.trimmingCharacters(in: .whitespaces), !region.isEmpty { return region }
        }
        return profile?["region"]
    }
}

/// Where an AWS service's API is, honouring the endpoint overrides the AWS CLI honours
/// (`AWS_ENDPOINT_URL_ECS=http://127.0.0.1:5000` sends ECS calls to an emulator).
package enum AWSEndpoint {
    /// The service's base URL, without a trailing slash:
    /// 1. `AWS_ENDPOINT_URL_<SERVICE ID>` (the service ID upper-cased, spaces and dashes made
    ///    underscores: `AWS_ENDPOINT_URL_ECS`, `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS` for `logs`);
    /// 2. `AWS_ENDPOINT_URL`;
    /// 3. `https://<service>.<region>.amazonaws.com` (`.amazonaws.com.cn` in China regions);
    ///    IAM is global: `https://iam.amazonaws.com`.
    ///
    /// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` skips the first two.
    /// - Parameters:
    ///   - service: The signing name: `ecs`, `ec2`, `iam`, `logs`, `sts`, `s3`, `ecr` (whose endpoint is `api.ecr.…`).
    ///   - region: The region.
    ///   - environment: The process's environment.
    package static func url(service: String, region: String, environment: [String: String]) -> String {
        if environment["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"]?.lowercased() != "true" {
            let variable = "AWS_ENDPOINT_URL_" + environmentSuffix(serviceID: serviceID(service))
            for name in [variable, "AWS_ENDPOINT_URL"] {
                if let url = environment[name]?.trimmingCharacters(in: .whitespaces), !url.isEmpty {
                    return url.hasSuffix("/") ? String(url.dropLast()) : url
                }
            }
        }
        let suffix = region.hasPrefix("cn-") ? "amazonaws.com.cn" : "amazonaws.com"
        if service == "iam" {
            if region.hasPrefix("cn-") { return "https://iam.cn-north-1.amazonaws.com.cn" }
            if region.hasPrefix("us-gov-") { return "https://iam.us-gov.amazonaws.com" }
            return "https://iam.amazonaws.com"
        }
        // ECR's API lives under `api.ecr.`; its signing name and service ID are `ecr`.
        let prefix = service == "ecr" ? "api.ecr" : service
        return "https://\(prefix).\(region).\(suffix)"
    }

    /// The region a request to the service is signed for: the region itself, but IAM's
    /// global endpoint is signed for `us-east-1` (`cn-north-1`, `us-gov-west-1` in those partitions).
    package static func signingRegion(service: String, region: String) -> String {
        guard service == "iam" else { return region }
        if region.hasPrefix("cn-") { return "cn-north-1" }
        if region.hasPrefix("us-gov-") { return "us-gov-west-1" }
        return "us-east-1"
    }

    /// The `Host` header for a base URL: its host, with the port unless the scheme's default.
    /// - Returns: `nil` when the URL has no host.
    package static func host(ofURL url: String) -> String? {
        guard let components = URLComponents(string: url), let host = components.host, !host.isEmpty else { return nil }
        let bracketed = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        guard let port = components.port else { return bracketed.lowercased() }
        let isDefault = (components.scheme == "https" && port == 443) || (components.scheme == "http" && port == 80)
        return isDefault ? bracketed.lowercased() : "\(bracketed.lowercased()):\(port)"
    }

    /// The service ID botocore's models give an endpoint prefix, where it is not the prefix
    /// upper-cased.
    static func serviceID(_ service: String) -> String {
        switch service {
        case "logs": "CloudWatch Logs"
        case "monitoring": "CloudWatch"
        case "events": "EventBridge"
        case "secretsmanager": "Secrets Manager"
        case "servicediscovery": "ServiceDiscovery"
        case "application-autoscaling": "Application Auto Scaling"
        default: service
        }
    }

    /// A service ID as the environment variable spells it: upper-cased, spaces and dashes made underscores.
    package static func environmentSuffix(serviceID: String) -> String {
        String(serviceID.uppercased().map { $0 == " " || $0 == "-" ? "_" : $0 })
    }
}
