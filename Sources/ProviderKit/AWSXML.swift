import Foundation

/// An element of an AWS query-protocol answer: its name, its child elements and its text.
///
/// A small reader for the XML that EC2 and IAM send (elements, text, the five named entities
/// and numeric ones, comments, a declaration); attributes and namespaces are read past.
///
/// ```swift
/// let root = try AWSXML.parse(body)
/// let ids = root.all("groupId").map(\.text)
/// ```
package struct AWSXML: Sendable, Equatable {
    /// The element's name, without a namespace prefix.
    package var name: String
    /// Its child elements, in order.
    package var children: [AWSXML]
    /// Its own text, entities replaced, trimmed of surrounding whitespace.
    package var text: String

    /// Creates an element.
    package init(name: String, children: [AWSXML] = [], text: String = "") {
        self.name = name
        self.children = children
        self.text = text
    }

    /// The first child with this name.
    package func child(_ name: String) -> AWSXML? { children.first { $0.name == name } }

    /// The first element with this name, this one or below, depth first.
    package func first(_ name: String) -> AWSXML? {
        if self.name == name { return self }
        for child in children { if let found = child.first(name) { return found } }
        return nil
    }

    /// Every element with this name below this one, depth first (not inside a match).
    package func all(_ name: String) -> [AWSXML] {
        children.flatMap { $0.name == name ? [$0] : $0.all(name) }
    }

    /// The text of the element at a path of child names (`["Role", "Arn"]`), if there is one.
    package func value(_ path: String...) -> String? {
        var element = self
        for name in path {
            guard let next = element.child(name) else { return nil }
            element = next
        }
        return element.text
    }

    /// The `<item>` (EC2's `<groupSet><item>…`) or `<member>` (IAM's, under its `…Result`)
    /// elements of the first list with this name, this element or below.
    package func items(_ listName: String) -> [AWSXML] {
        (first(listName)?.children ?? []).filter { $0.name == "item" || $0.name == "member" }
    }

    /// A malformed document.
    package struct ParseError: Error, CustomStringConvertible {
        package var description: String
    }

    /// Reads a document and returns its root element.
    /// - Throws: ``ParseError`` naming what is wrong and where.
    package static func parse(_ data: Data) throws -> AWSXML {
        var reader = Reader(bytes: Array(data))
        return try reader.document()
    }

    private struct Reader {
        let bytes: [UInt8]
        var index = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        mutating func document() throws -> AWSXML {
            while true {
                skipWhitespace()
                guard index < bytes.count else { throw ParseError(description: "no root element") }
                if starts("<?") { try skip(past: "?>") } else if starts("<!--") { try skip(past: "-->") }
                else if starts("<!") { try skip(past: ">") } else { break }
            }
            return try element()
        }

        mutating func element() throws -> AWSXML {
            guard starts("<") else { throw ParseError(description: "expected an element at byte \(index)") }
            index += 1
            let qualified = readName()
            guard !qualified.isEmpty else { throw ParseError(description: "an element without a name at byte \(index)") }
            let name = String(qualified.split(separator: ":").last ?? Substring(qualified))
            // Attributes are read past, quoted values included.
            while index < bytes.count, bytes[index] != UInt8(ascii: ">"), !starts("/>") {
                if bytes[index] == UInt8(ascii: "\"") || bytes[index] == UInt8(ascii: "'") {
                    let quote = bytes[index]
                    index += 1
                    while index < bytes.count, bytes[index] != quote { index += 1 }
                }
                index += 1
            }
            if starts("/>") {
                index += 2
                return AWSXML(name: name)
            }
            guard index < bytes.count else { throw ParseError(description: "the element <\(qualified)> is not closed") }
            index += 1
            var element = AWSXML(name: name)
            var text: [UInt8] = []
            while true {
                guard index < bytes.count else { throw ParseError(description: "the element <\(qualified)> is not closed") }
                if starts("</") {
                    index += 2
                    let closing = readName()
                    guard closing == qualified else {
                        throw ParseError(description: "<\(qualified)> is closed by </\(closing)>")
                    }
                    try skip(past: ">")
                    break
                } else if starts("<!--") {
                    try skip(past: "-->")
                } else if starts("<![CDATA[") {
                    index += 9
                    let start = index
                    try skip(past: "]]>")
                    text += bytes[start..<(index - 3)]
                } else if starts("<") {
                    element.children.append(try self.element())
                } else {
                    text.append(bytes[index])
                    index += 1
                }
            }
            element.text = Self.decodeEntities(String(decoding: text, as: UTF8.self)).trimmingCharacters(in: .whitespacesAndNewlines)
            return element
        }

        mutating func readName() -> String {
            let start = index
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: " ") || byte == UInt8(ascii: ">") || byte == UInt8(ascii: "/") || byte == 9 || byte == 10
                    || byte == 13 { break }
                index += 1
            }
            return String(decoding: bytes[start..<index], as: UTF8.self)
        }

        func starts(_ text: String) -> Bool {
            let pattern = Array(text.utf8)
            guard index + pattern.count <= bytes.count else { return false }
            return Array(bytes[index..<(index + pattern.count)]) == pattern
        }

        mutating func skip(past text: String) throws {
            while index < bytes.count {
                if starts(text) {
                    index += text.utf8.count
                    return
                }
                index += 1
            }
            throw ParseError(description: "'\(text)' is missing")
        }

        mutating func skipWhitespace() {
            while index < bytes.count, [9, 10, 13, 32].contains(bytes[index]) { index += 1 }
        }

        static func decodeEntities(_ text: String) -> String {
            guard text.contains("&") else { return text }
            var result = ""
            var rest = Substring(text)
            while let amp = rest.firstIndex(of: "&") {
                result += rest[..<amp]
                guard let semicolon = rest[amp...].firstIndex(of: ";"), rest.distance(from: amp, to: semicolon) <= 10 else {
                    result += "&"
                    rest = rest[rest.index(after: amp)...]
                    continue
                }
                let entity = rest[rest.index(after: amp)..<semicolon]
                switch entity {
                case "amp": result += "&"
                case "lt": result += "<"
                case "gt": result += ">"
                case "quot": result += "\""
                case "apos": result += "'"
                default:
                    let scalar: UInt32? = entity.hasPrefix("#x") ? UInt32(entity.dropFirst(2), radix: 16)
                        : entity.hasPrefix("#") ? UInt32(entity.dropFirst()) : nil
                    if let scalar, let character = Unicode.Scalar(scalar) { result.unicodeScalars.append(character) }
                    else { result += "&\(entity);" }
                }
                rest = rest[rest.index(after: semicolon)...]
            }
            return result + rest
        }
    }
}
