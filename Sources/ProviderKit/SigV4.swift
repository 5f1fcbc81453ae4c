import Crypto
import Foundation
import NIOHTTP1

/// Signs requests to AWS with Signature Version 4: a pure value, the time passed in.
///
/// It follows AWS's specification and botocore's `SigV4Auth` (its differential oracle in the
/// tests): the canonical request is the method, the path with dot segments and repeated slashes
/// removed and percent-encoded once more (services other than S3 sign the path "double
/// encoded"; S3 signs it as sent), the query sorted by encoded name and value, the headers
/// lower-cased with their values trimmed and inner whitespace collapsed, and the payload's
/// SHA-256.
///
/// ```swift
/// var request = RESTRequest(.POST, "/", headers: ["X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListClusters"], body: body)
/// SigV4Signer(service: "ecs", region: "eu-west-1").sign(&request, host: "ecs.eu-west-1.amazonaws.com", credentials: credentials, date: .now)
/// ```
package struct SigV4Signer: Sendable {
    /// The service's signing name (`ecs`, `ec2`, `iam`, `logs`, `s3`).
    package var service: String
    /// The region the request is signed for (`us-east-1` for IAM, whatever the endpoint).
    package var region: String
    /// Whether the request carries its payload's hash in `X-Amz-Content-Sha256` (S3 requires it).
    package var sendsContentHash: Bool
    /// Whether the path is normalised and encoded again before it is signed (every service but S3).
    package var encodesPathTwice: Bool

    /// The headers never signed, as botocore leaves them out: proxies and HTTP clients may
    /// change them on the way.
    package static let unsignedHeaders: Set<String> = [
        "baggage", "connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "traceparent",
        "tracestate", "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id", "authorization",
    ]

    /// The SHA-256 of an empty payload.
    package static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// Creates a signer for a service in a region.
    /// - Parameters:
    ///   - service: The signing name; `s3` turns on S3's rules (``sendsContentHash``, the path
    ///     signed as sent).
    ///   - region: The signing region.
    package init(service: String, region: String) {
        self.service = service
        self.region = region
        let isS3 = service == "s3" || service == "s3-object-lambda" || service == "s3express"
        self.sendsContentHash = isS3
        self.encodesPathTwice = !isS3
    }

    /// What signing produced, for tests and debug logs (it holds no secret).
    package struct Signature: Sendable, Equatable {
        /// The canonical request.
        package var canonicalRequest: String
        /// The string to sign.
        package var stringToSign: String
        /// The `Authorization` header's value.
        package var authorization: String
    }

    /// Signs a request: sets `Host`, `X-Amz-Date`, `X-Amz-Security-Token` when the credentials
    /// have a session token, `X-Amz-Content-Sha256` when ``sendsContentHash``, and
    /// `Authorization`, replacing any earlier values (a retried request is signed again).
    /// - Parameters:
    ///   - request: The request, its path as it goes on the wire; every header it carries is
    ///     signed except ``unsignedHeaders``, so add them all before signing.
    ///   - host: The `Host` header's value: the endpoint's host, with its port unless the
    ///     scheme's default.
    ///   - credentials: Whom the request is signed as.
    ///   - date: The signing time; AWS refuses requests more than 5 minutes off its clock.
    /// - Returns: The intermediate strings, for tests.
    @discardableResult
    package func sign(_ request: inout RESTRequest, host: String, credentials: AWSCredentials, date: Date) -> Signature {
        let timestamp = Self.timestamp(date)
        request.headers.remove(name: "Authorization")
        request.headers.replaceOrAdd(name: "Host", value: host)
        request.headers.replaceOrAdd(name: "X-Amz-Date", value: timestamp)
        request.headers.remove(name: "X-Amz-Security-Token")
        if let token = credentials.sessionToken { request.headers.add(name: "X-Amz-Security-Token", value: token) }
        if sendsContentHash {
            request.headers.replaceOrAdd(name: "X-Amz-Content-Sha256", value: Self.payloadHash(request.body))
        }
        let canonical = canonicalRequest(request)
        let toSign = stringToSign(canonicalRequest: canonical, date: date)
        let key = signingKey(secretAccessKey: credentials.secretAccessKey, date: date)
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Data(toSign.utf8), using: key))
        let authorization = "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(credentialScope(date: date)), "
            + "SignedHeaders=\(signedHeaders(request)), Signature=\(signature)"
        request.headers.add(name: "Authorization", value: authorization)
        return Signature(canonicalRequest: canonical, stringToSign: toSign, authorization: authorization)
    }

    /// The canonical request of a request as it will be sent (its `Host` and `X-Amz-*` headers
    /// already set): method, canonical path, canonical query, canonical headers, signed
    /// headers and payload hash, one a line.
    package func canonicalRequest(_ request: RESTRequest) -> String {
        let headers = canonicalHeaders(request)
        let payload = request.headers.first(name: "X-Amz-Content-Sha256") ?? Self.payloadHash(request.body)
        return [
            request.method.rawValue.uppercased(),
            canonicalPath(request.path),
            Self.canonicalQuery(request.query),
            headers.map { "\($0.name):\($0.value)\n" }.joined(),
            headers.map(\.name).joined(separator: ";"),
            payload,
        ].joined(separator: "\n")
    }

    /// The string to sign: the algorithm, the time, the credential scope and the canonical
    /// request's SHA-256, one a line.
    package func stringToSign(canonicalRequest: String, date: Date) -> String {
        let hash = Self.hex(SHA256.hash(data: Data(canonicalRequest.utf8)))
        return "AWS4-HMAC-SHA256\n\(Self.timestamp(date))\n\(credentialScope(date: date))\n\(hash)"
    }

    /// `yyyymmdd/region/service/aws4_request`.
    package func credentialScope(date: Date) -> String {
        "\(Self.timestamp(date).prefix(8))/\(region)/\(service)/aws4_request"
    }

    /// The path as signed: for S3 as sent (`/` when empty); for other services with dot
    /// segments and empty segments removed, then percent-encoded, so that an encoded
    /// character is encoded twice (`%20` becomes `%2520`).
    package func canonicalPath(_ path: String) -> String {
        guard encodesPathTwice else { return path.isEmpty ? "/" : path }
        return Self.percentEncode(Self.removingDotSegments(path), keepingSlashes: true)
    }

    /// The query as signed: each name and value percent-encoded (RFC 3986: all but letters,
    /// digits and `-._~`), sorted by name, then value, and joined with `&`.
    package static func canonicalQuery(_ query: [QueryItem]) -> String {
        query.map { (percentEncode($0.name, keepingSlashes: false), percentEncode($0.value, keepingSlashes: false)) }
            .sorted { $0.0 == $1.0 ? precedes($0.1, $1.1) : precedes($0.0, $1.0) }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// The signed headers, sorted by lower-cased name, each with its values trimmed, inner
    /// whitespace collapsed, and joined with `,` in the order they appear.
    package func canonicalHeaders(_ request: RESTRequest) -> [(name: String, value: String)] {
        var values: [String: [String]] = [:]
        for (name, value) in request.headers {
            let lowered = name.lowercased()
            guard !Self.unsignedHeaders.contains(lowered) else { continue }
            values[lowered, default: []].append(Self.trimmingAll(value))
        }
        return values.keys.sorted(by: Self.precedes).map { name in (name, values[name, default: []].joined(separator: ",")) }
    }

    /// The signed headers' lower-cased names, sorted, joined with `;`.
    package func signedHeaders(_ request: RESTRequest) -> String {
        canonicalHeaders(request).map(\.name).joined(separator: ";")
    }

    /// The key derived from the secret for a day, region and service.
    func signingKey(secretAccessKey: String, date: Date) -> SymmetricKey {
        var key = SymmetricKey(data: Data("AWS4\(secretAccessKey)".utf8))
        for part in [String(Self.timestamp(date).prefix(8)), region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return key
    }

    /// The time as SigV4 writes it: `yyyyMMdd'T'HHmmss'Z'`, in UTC.
    package static func timestamp(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func pad(_ value: Int?, _ width: Int) -> String {
            let text = String(value ?? 0)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return pad(parts.year, 4) + pad(parts.month, 2) + pad(parts.day, 2) + "T"
            + pad(parts.hour, 2) + pad(parts.minute, 2) + pad(parts.second, 2) + "Z"
    }

    /// The hex SHA-256 of a body (of nothing when `nil`).
    package static func payloadHash(_ body: Data?) -> String {
        guard let body, !body.isEmpty else { return emptyPayloadHash }
        return hex(SHA256.hash(data: body))
    }

    /// Percent-encodes the UTF-8 bytes of `text` except letters, digits, `-._~` and, if asked, `/`.
    package static func percentEncode(_ text: String, keepingSlashes: Bool) -> String {
        var encoded = ""
        encoded.reserveCapacity(text.utf8.count)
        let digits = Array("0123456789ABCDEF".utf8)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepingSlashes:
                encoded.append("/")
            default:
                encoded.append("%")
                encoded.unicodeScalars.append(Unicode.Scalar(digits[Int(byte >> 4)]))
                encoded.unicodeScalars.append(Unicode.Scalar(digits[Int(byte & 0x0F)]))
            }
        }
        return encoded
    }

    /// RFC 3986's "remove dot segments", also dropping empty segments as AWS requires
    /// (`//a/./b/../c/` becomes `/a/c/`); an empty path becomes `/`.
    package static func removingDotSegments(_ path: String) -> String {
        guard !path.isEmpty else { return "/" }
        var output: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) where segment != "." {
            if segment == ".." {
                _ = output.popLast()
            } else {
                output.append(segment)
            }
        }
        let leading = path.hasPrefix("/") ? "/" : ""
        let trailing = path.hasSuffix("/") && !output.isEmpty ? "/" : ""
        return leading + output.joined(separator: "/") + trailing
    }

    /// A header value with leading and trailing whitespace removed and each run of inner
    /// whitespace (spaces, tabs, line breaks of a folded header) made one space.
    static func trimmingAll(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" || $0 == "\u{0B}" || $0 == "\u{0C}" })
            .joined(separator: " ")
    }

    /// Byte-wise order of the UTF-8 encodings, as SigV4 sorts.
    static func precedes(_ lhs: String, _ rhs: String) -> Bool {
        lhs.utf8.lexicographicallyPrecedes(rhs.utf8)
    }

    static func hex<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        let digits = Array("0123456789abcdef".unicodeScalars)
        var text = ""
        for byte in bytes {
            text.unicodeScalars.append(digits[Int(byte >> 4)])
            text.unicodeScalars.append(digits[Int(byte & 0x0F)])
        }
        return text
    }
}
