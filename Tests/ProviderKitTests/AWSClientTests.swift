import Foundation
import NIOHTTP1
import ProviderKit
import Testing

@Suite struct AWSClientTests {
    static let environment = [
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "AWS_EC2_METADATA_DISABLED": "true",
    ]

    static func client(_ service: AWSClient.Service, _ exchanges: [RecordedTransport.Exchange], environment: [String: String] = environment)
        -> (AWSClient, RecordedTransport)
    {
        let transport = RecordedTransport(exchanges)
        let chain = AWSCredentialChain(
            configuration: .init(environment: environment, homeDirectory: "/nonexistent-home"),
            makeTransport: { base in FailingTransport(reason: "unexpected request to \(base)") })
        let client = AWSClient(
            service: service, region: "eu-west-1", environment: environment, credentials: chain, transport: transport,
            now: { Date(timeIntervalSince1970: 1_440_938_160) }, sleep: { _ in })
        return (client, transport)
    }

    struct ListClusters: Codable, Sendable, Equatable {
        var clusterArns: [String]?
    }

    @Test func aJSONCallIsSignedAndNamesItsOperation() async throws {
        let (client, transport) = Self.client(.ecs, [
            .json(.POST, "/", #"{"clusterArns":["arn:aws:ecs:eu-west-1:1:cluster/a"]}"#) { request in
                #expect(request.headers.first(name: "X-Amz-Target") == "AmazonEC2ContainerServiceV20141113.ListClusters")
                #expect(request.headers.first(name: "Content-Type") == "application/x-amz-json-1.1")
                #expect(request.headers.first(name: "Host") == "ecs.eu-west-1.amazonaws.com")
                #expect(request.headers.first(name: "X-Amz-Date") == "20150830T123600Z")
                let authorization = request.headers.first(name: "Authorization") ?? ""
                #expect(authorization.hasPrefix("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/ecs/aws4_request"))
                #expect(!authorization.contains("wJalr"))
                #expect(String(decoding: request.body ?? Data(), as: UTF8.self) == "{}")
            },
        ])
        let answer = try await client.json("ListClusters", ListClusters(), as: ListClusters.self)
        #expect(answer.clusterArns == ["arn:aws:ecs:eu-west-1:1:cluster/a"])
        #expect(client.endpoint == "https://ecs.eu-west-1.amazonaws.com")
        try await transport.verify()
    }

    @Test func anEndpointOverrideIsUsedAndSignedForItsHost() async throws {
        var environment = Self.environment
        environment["AWS_ENDPOINT_URL_ECS"] = "http://127.0.0.1:4566"
        let (client, transport) = Self.client(.ecs, [
            .json(.POST, "/", "{}") { request in #expect(request.headers.first(name: "Host") == "127.0.0.1:4566") }
        ], environment: environment)
        _ = try await client.json("ListClusters", ListClusters(), as: ListClusters.self)
        #expect(client.endpoint == "http://127.0.0.1:4566")
        try await transport.verify()
    }

    @Test func aJSONRefusalCarriesItsCodeAndMessage() async throws {
        let (client, _) = Self.client(.ecs, [
            .json(.POST, "/", status: 400, #"{"__type":"com.amazonaws.ecs#ClusterNotFoundException","message":"Cluster not found."}"#)
        ])
        await #expect {
            try await client.json("DescribeClusters", ListClusters(), as: ListClusters.self)
        } throws: { error in
            guard let error = error as? AWSServiceError else { return false }
            return error.code == "ClusterNotFoundException" && error.message == "Cluster not found." && error.status == 400
                && error.isNotFound && "\(error)" == "Amazon ECS refused DescribeClusters (ClusterNotFoundException): Cluster not found."
        }
    }

    @Test func throttlingIsRetriedEvenForAWrite() async throws {
        let (client, transport) = Self.client(.ecs, [
            .json(.POST, "/", status: 400, #"{"__type":"ThrottlingException","message":"Rate exceeded"}"#),
            .json(.POST, "/", status: 429, #"{"__type":"TooManyRequestsException"}"#),
            .json(.POST, "/", #"{"clusterArns":[]}"#),
        ])
        let answer = try await client.json("RunTask", ListClusters(), as: ListClusters.self)
        #expect(answer.clusterArns == [])
        try await transport.verify()
    }

    @Test func aQueryThrottleInXMLIsRetried() async throws {
        let throttled = Data("<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>".utf8)
        let (client, transport) = Self.client(.iam, [
            .init(.POST, "/", status: 400, body: throttled),
            .init(.POST, "/", body: Data("<GetRoleResponse><GetRoleResult><Role><Arn>arn:aws:iam::1:role/r</Arn></Role></GetRoleResult></GetRoleResponse>".utf8)),
        ])
        let root = try await client.query("GetRole", ["RoleName": "r"])
        #expect(root.value("GetRoleResult", "Role", "Arn") == "arn:aws:iam::1:role/r")
        try await transport.verify()
    }

    @Test func aQueryCallIsAFormSignedForIAMsGlobalRegion() async throws {
        let (client, transport) = Self.client(.iam, [
            .init(.POST, "/", body: Data("<CreateRoleResponse><CreateRoleResult><Role><Arn>a</Arn></Role></CreateRoleResult></CreateRoleResponse>".utf8)) { request in
                #expect(String(decoding: request.body ?? Data(), as: UTF8.self)
                    == "Action=CreateRole&Version=2010-05-08&AssumeRolePolicyDocument=%7B%22a%22%3A+1%7D&RoleName=my+role")
                #expect(request.headers.first(name: "Host") == "iam.amazonaws.com")
                #expect((request.headers.first(name: "Authorization") ?? "").contains("/us-east-1/iam/aws4_request"))
            },
        ])
        _ = try await client.query("CreateRole", ["RoleName": "my role", "AssumeRolePolicyDocument": #"{"a": 1}"#])
        try await transport.verify()
    }

    @Test func anEC2RefusalInXMLCarriesItsCode() async throws {
        let body = Data("""
            <?xml version="1.0" encoding="UTF-8"?>
            <Response><Errors><Error><Code>InvalidGroup.Duplicate</Code><Message>The security group &apos;x&apos; already exists</Message></Error></Errors><RequestID>1</RequestID></Response>
            """.utf8)
        let (client, _) = Self.client(.ec2, [.init(.POST, "/", status: 400, body: body)])
        await #expect {
            try await client.query("CreateSecurityGroup", [:])
        } throws: { error in
            (error as? AWSServiceError)?.code == "InvalidGroup.Duplicate"
                && (error as? AWSServiceError)?.message == "The security group 'x' already exists"
        }
    }

    @Test func expiredCredentialsAreFetchedAgainOnce() async throws {
        let (client, transport) = Self.client(.ecs, [
            .json(.POST, "/", status: 400, #"{"__type":"ExpiredTokenException","message":"The security token included in the request is expired"}"#),
            .json(.POST, "/", #"{"clusterArns":["a"]}"#),
        ])
        #expect(try await client.json("ListClusters", ListClusters(), as: ListClusters.self).clusterArns == ["a"])
        try await transport.verify()
    }

    @Test func missingCredentialsSayWhereTheChainLooked() async throws {
        let (client, _) = Self.client(.ecs, [], environment: ["AWS_EC2_METADATA_DISABLED": "true"])
        await #expect {
            try await client.json("ListClusters", ListClusters(), as: ListClusters.self)
        } throws: { error in
            let text = "\(error)"
            return error is AWSCredentialsError && text.contains("environment") && text.contains("instance metadata")
        }
    }

    // MARK: XML

    @Test func theXMLReaderReadsEC2sLists() throws {
        let root = try AWSXML.parse(Data("""
            <?xml version="1.0" encoding="UTF-8"?>
            <DescribeSecurityGroupsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
              <requestId>r</requestId>
              <securityGroupInfo>
                <item><groupId>sg-1</groupId><groupName>a &amp; b</groupName><tagSet><item><key>k</key><value>v</value></item></tagSet></item>
                <item><groupId>sg-2</groupId><groupName><![CDATA[<c>]]></groupName><empty/></item>
              </securityGroupInfo>
              <!-- a comment -->
            </DescribeSecurityGroupsResponse>
            """.utf8))
        #expect(root.name == "DescribeSecurityGroupsResponse")
        #expect(root.items("securityGroupInfo").map { $0.value("groupId") } == ["sg-1", "sg-2"])
        #expect(root.items("securityGroupInfo").map { $0.value("groupName") } == ["a & b", "<c>"])
        #expect(root.all("groupId").map(\.text) == ["sg-1", "sg-2"])
        #expect(root.first("key")?.text == "k")
        #expect(root.items("securityGroupInfo")[1].child("empty")?.text == "")
    }

    @Test func theXMLReaderRefusesBrokenDocuments() {
        for text in ["", "<a><b></a>", "<a>", "no xml"] {
            #expect(throws: AWSXML.ParseError.self, "\(text)") { try AWSXML.parse(Data(text.utf8)) }
        }
    }
}
