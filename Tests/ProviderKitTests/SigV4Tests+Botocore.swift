import Foundation
import NIOHTTP1
import ProviderKit
import Testing

/// The differential test: random requests signed here and by botocore's `SigV4Auth`
/// (`aws4_testsuite/botocore_sign.py`) must match exactly. Skipped when Python cannot import
/// botocore, unless `DOCKERPARALLEL_REQUIRE_AWS_TOOLS=1` (CI), where that fails.
extension SigV4Tests {
    static let botocoreRequired = ProcessInfo.processInfo.environment["DOCKERPARALLEL_REQUIRE_AWS_TOOLS"] == "1"
    static let botocoreAvailable: Bool = {
        guard let result = try? run(["python3", "-c", "import botocore"], input: Data()) else { return false }
        return result.status == 0
    }()

    @Test(.enabled(if: botocoreAvailable || botocoreRequired, "python3 cannot import botocore (pip install botocore)"))
    func matchesBotocoreOnRandomRequests() throws {
        try #require(Self.botocoreAvailable, "DOCKERPARALLEL_REQUIRE_AWS_TOOLS=1 but python3 cannot import botocore: pip install botocore")
        let seed: UInt64 = 0x5167_5634_2026
        var random = SplitMix64(seed: seed)
        let requests = (0..<60).map { _ in RandomRequest(using: &random) }
        let input = try JSONEncoder().encode(requests)
        let script = Self.suiteDirectory.appendingPathComponent("botocore_sign.py").path
        let result = try Self.run(["python3", script], input: input)
        try #require(result.status == 0, "botocore_sign.py failed: \(String(decoding: result.error, as: UTF8.self))")
        let expected = try JSONDecoder().decode([[String: String]].self, from: result.output)
        try #require(expected.count == requests.count)
        var signedS3 = 0
        for (spec, botocore) in zip(requests, expected) {
            var request = spec.restRequest
            let credentials = AWSCredentials(
                accessKeyID: spec.accessKeyID, secretAccessKey: spec.secretAccessKey, sessionToken: spec.sessionToken)
            let date = Date(timeIntervalSince1970: spec.epochSeconds)
            let signature = SigV4Signer(service: spec.service, region: spec.region)
                .sign(&request, host: spec.host, credentials: credentials, date: date)
            let context = "seed \(seed), request \(spec.method) \(spec.path) query \(spec.query) headers \(spec.headers)"
            #expect(signature.canonicalRequest == botocore["canonicalRequest"], "\(context)")
            #expect(signature.stringToSign == botocore["stringToSign"], "\(context)")
            #expect(signature.authorization == botocore["authorization"], "\(context)")
            if spec.service == "s3" { signedS3 += 1 }
        }
        #expect(signedS3 > 0)
    }

    /// Runs a program found on the `PATH` and returns its status and output.
    static func run(_ arguments: [String], input: Data) throws -> (status: Int32, output: Data, error: Data) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        // The script reads all its input before writing, so writing it all first cannot block.
        stdin.fileHandleForWriting.write(input)
        try stdin.fileHandleForWriting.close()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let error = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, output, error)
    }
}

/// A request with odd paths, repeated and unicode query items, padded and repeated headers,
/// and a random body, in the JSON `botocore_sign.py` reads.
struct RandomRequest: Encodable {
    var method: String
    var path: String
    var query: [[String]]
    var headers: [[String]]
    var body: String
    var host: String
    var service: String
    var region: String
    var accessKeyID: String
    var secretAccessKey: String
    var sessionToken: String?
    var timestamp: String
    var epochSeconds: Double

    init(using random: inout SplitMix64) {
        func pick<T>(_ items: [T]) -> T { items[Int(random.next() % UInt64(items.count))] }
        func count(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(random.next() % UInt64(range.count)) }

        method = pick(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"])
        service = pick(["ecs", "ec2", "iam", "logs", "sts", "s3"])
        region = pick(["us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1"])
        host = pick(["\(service).\(region).amazonaws.com", "127.0.0.1:4566", "localhost:5000"])

        let pieces = ["a", "Z9", "-._~", "%20", "%2F", "%25", "%E2%82%AC", "ü", "日本", "$", "!", "'", "(", ")", "*", "+", ",", ";", "=",
                      ":", "@", "&", " ", "x y"]
        var segments: [String] = []
        for _ in 0..<count(0...4) {
            switch random.next() % 8 {
            case 0: segments.append(".")
            case 1: segments.append("..")
            case 2: segments.append("")
            default: segments.append((0..<count(1...3)).map { _ in pick(pieces) }.joined())
            }
        }
        path = "/" + segments.joined(separator: "/") + (random.next() % 3 == 0 ? "/" : "")

        let names = ["Action", "a", "a", "b c", "ü", "x/y", "k+v", "=", "&", "~", "Version", "Filter.1.Name", ""]
        let values = ["", "1", "Z", "z", "a b", "a+b", "日本", "%41", "/", "v=w&x", "RunTask", "  pad  "]
        query = (0..<count(0...5)).map { _ in [pick(names), pick(values)] }

        let headerNames = ["My-Header", "my-header", "X-Amz-Target", "Content-Type", "X-Custom", "User-Agent", "X-Amzn-Trace-Id", "Accept"]
        let headerValues = ["  a   b  ", "v\tw", "VALUE", "x,y", "", "application/x-amz-json-1.1", "\"a   b   c\"", " lead", "trail "]
        headers = (0..<count(0...4)).map { _ in [pick(headerNames), pick(headerValues)] }

        let bodyBytes = (0..<count(0...64)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        body = Data(bodyBytes).base64EncodedString()
        accessKeyID = pick(["AKIDEXAMPLE", "ASIAEXAMPLE123"])
        secretAccessKey = pick(["wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "secret/with+odd=chars"])
        sessionToken = random.next() % 3 == 0 ? "FwoGZXIvYXdzEP//////////token+/=" : nil
        epochSeconds = Double(1_420_070_400 + Int(random.next() % 500_000_000))
        timestamp = SigV4Signer.timestamp(Date(timeIntervalSince1970: epochSeconds))
    }

    /// The request as ``SigV4Signer`` signs it.
    var restRequest: RESTRequest {
        var headers = HTTPHeaders()
        for pair in self.headers { headers.add(name: pair[0], value: pair[1]) }
        let bytes = Data(base64Encoded: body) ?? Data()
        return RESTRequest(
            HTTPMethod(rawValue: method), path, query: query.map { QueryItem($0[0], $0[1]) }, headers: headers,
            body: bytes.isEmpty ? nil : bytes)
    }
}

/// A small seeded generator, so a failure can be reproduced.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
